"""Everything the tests share: live servers (live.py), worker settings and clients (worker.py),
the image fixtures (image.py), text engine helpers and the lively tiny model (engine.py), the
gateway's fake workers and settings (gateway.py). Fixture modules are registered as plugins by
the root conftest."""
