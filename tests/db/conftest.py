"""The store's tests run on SQLite and the real PostgreSQL, with the gateway tests' fixtures."""

from tests.gateway.conftest import database_url, pg_schemas  # noqa: F401  (fixtures)
