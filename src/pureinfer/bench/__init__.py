"""Benchmarks that run in one process against the real engines and worker app (`pureinfer bench ...`)."""
