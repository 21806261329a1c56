"""``diffusion-layers bench``: the plain-diffusers baseline vs our server path, end to end.

Modules: scenarios (what runs), weights (random full-size / tiny models on disk), baseline
(plain diffusers), server (our real server on loopback + a timing client), transfer (codec and
HTTP overhead), report (JSON + table), harness (the run).
"""
