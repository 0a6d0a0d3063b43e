"""pureinfer: pure-inference workers (text, SDXL images) and a gateway that owns the prompts."""

# First, so that every `pureinfer.*` logger is built with the logger class that never fails a
# request over a log call's `extra=` keys (see pureinfer/logging.py).
import pureinfer.logging  # noqa: F401, E402  (for its logger class)

__version__ = "0.1.0"
