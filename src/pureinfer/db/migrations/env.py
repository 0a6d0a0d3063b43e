"""Alembic environment: always run online on the connection handed over by `store.db`."""

from alembic import context

from pureinfer.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when alembic is run by hand
    raise RuntimeError("run migrations through pureinfer.db.store.run_migrations")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
