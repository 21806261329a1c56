"""Sub-commands of the ``diffusion-layers`` CLI (see backend/cli.py)."""
