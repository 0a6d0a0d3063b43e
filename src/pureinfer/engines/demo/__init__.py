"""Offline demo models: tiny random-weight text and SDXL models built locally in seconds
(text.py, image.py, build.py), and a model-free echo engine for tests where the model is beside
the point (echo.py)."""
