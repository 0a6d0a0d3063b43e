"""pureinfer: pure-inference workers (text, SDXL images) and a gateway that owns the prompts."""

__version__ = "0.1.0"
