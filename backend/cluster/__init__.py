"""Studio scale on Ray Serve (``diffusion-layers serve --cluster``); see docs/cluster.md.

Optional: needs the ``cluster`` extra (``pip install .[cluster]``). Nothing outside this package
imports Ray, and without ``--cluster`` nothing here runs.
"""
