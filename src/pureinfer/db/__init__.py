"""The SQL store: SQLAlchemy 2 models (kept apart from wire models) and the Alembic migrations
that create them. `db.open_store(url)` runs the migrations programmatically and returns an engine."""

from pureinfer.db.store import Store, open_store

__all__ = ["Store", "open_store"]
