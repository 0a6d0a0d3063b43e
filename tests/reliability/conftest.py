"""The reliability suite reuses the gateway suite's fixtures: the real PostgreSQL schemas,
gateway apps with their lifespan, fake workers on loopback."""

from tests.gateway.conftest import database_url, fake_workers, make_gateway, pg_schemas, sqlite_url  # noqa: F401
