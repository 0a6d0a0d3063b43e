"""The image engine: SDXL through diffusers, with request batching (see sdxl.py)."""
