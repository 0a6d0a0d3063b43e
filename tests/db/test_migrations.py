"""The migrations on SQLite and PostgreSQL: they build exactly the SQL models, and revision 0002
(the audit columns that make a row reproducible) upgrades a store with rows in place and
downgrades again, as does 0003 (the image columns)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, text

from pureinfer.db.models import Base
from pureinfer.db.store import MIGRATIONS_DIR, create_store_engine, open_store
from pureinfer.gateway.audit import repository as repo


def migrate(engine: Engine, action: str, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)


def test_the_migrations_build_the_models(database_url):
    store = open_store(database_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    store.dispose()
    assert diff == []


def test_0002_upgrades_a_store_with_rows_and_downgrades(database_url):
    engine = create_store_engine(database_url)
    migrate(engine, "upgrade", "0001")
    old_id = uuid.uuid4().hex
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_records (id, created_at, request_id, endpoint, latency_ms, status) "
                          "VALUES (:id, :t, 'old', 'enhance-prompt', 1.5, 200)"),
                     {"id": old_id, "t": datetime.now(UTC)})
    migrate(engine, "upgrade", "head")
    store = open_store(database_url)  # what the gateway does at startup: already at head, nothing to do
    new_id = uuid.uuid4().hex
    with store.transaction() as s:
        repo.insert_new(s, [{"id": new_id, "created_at": datetime.now(UTC), "request_id": "new",
                             "endpoint": "chat", "latency_ms": 2.0, "status": 200, "model_used": "qwen_instruct",
                             "sampling": {"max_tokens": 5, "seed": 2**63 - 1}, "prompt_sha256": "a" * 64,
                             "response_sha256": "b" * 64, "attempts": 2, "strategy": "template x v1",
                             "messages": [{"role": "user", "content": "hi"}], "response_text": "hello"}])
    with engine.connect() as conn:
        rows = {r.request_id: r for r in conn.execute(text(
            "SELECT request_id, model_used, sampling, attempts, messages FROM audit_records"))}
    assert rows["old"].model_used is None and rows["old"].attempts is None  # kept, new columns empty
    assert rows["new"].model_used == "qwen_instruct" and rows["new"].attempts == 2
    migrate(engine, "downgrade", "0001")
    with engine.connect() as conn:
        assert {r[0] for r in conn.execute(text("SELECT request_id FROM audit_records"))} == {"old", "new"}
        columns = {r[0] for r in conn.execute(text("SELECT * FROM audit_records")).cursor.description}
    assert "model_used" not in columns and "attempts" not in columns
    migrate(engine, "upgrade", "head")
    store.dispose()
    engine.dispose()


def test_0003_adds_the_image_columns_in_place_and_downgrades(database_url):
    engine = create_store_engine(database_url)
    migrate(engine, "upgrade", "0002")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_records (id, created_at, request_id, endpoint, latency_ms, status, "
                          "model_used) VALUES (:id, :t, 'text', 'chat', 1.5, 200, 'qwen_instruct')"),
                     {"id": uuid.uuid4().hex, "t": datetime.now(UTC)})
    migrate(engine, "upgrade", "0003")
    store = open_store(database_url)
    with store.transaction() as s:
        repo.insert_new(s, [{"id": uuid.uuid4().hex, "created_at": datetime.now(UTC), "request_id": "image",
                             "endpoint": "generate-image", "latency_ms": 9.0, "status": 200, "worker_type": "image",
                             "image_params": {"width": 64, "height": 64, "steps": 4, "cfg_scale": 7.0,
                                              "sampler": "euler", "num_images": 2},
                             "seeds": [2**63 - 1, 0], "asset_urls": ["http://h/a.png", "http://h/b.png"],
                             "timings": {"generation_time": 1.25}}])
    with engine.connect() as conn:
        rows = {r.request_id: r for r in conn.execute(text(
            "SELECT request_id, model_used, worker_type, image_params, seeds, asset_urls FROM audit_records"))}
    assert rows["text"].model_used == "qwen_instruct" and rows["text"].worker_type is None
    image = rows["image"]
    loads = (lambda v: v) if engine.dialect.name == "postgresql" else __import__("json").loads
    assert image.worker_type == "image"
    assert loads(image.image_params)["steps"] == 4 and loads(image.seeds) == [2**63 - 1, 0]
    assert loads(image.asset_urls) == ["http://h/a.png", "http://h/b.png"]
    migrate(engine, "downgrade", "0002")
    with engine.connect() as conn:
        assert {r[0] for r in conn.execute(text("SELECT request_id FROM audit_records"))} == {"text", "image"}
        columns = {r[0] for r in conn.execute(text("SELECT * FROM audit_records")).cursor.description}
    assert "model_used" in columns and not columns & {"worker_type", "image_params", "seeds", "asset_urls", "timings"}
    migrate(engine, "upgrade", "head")
    store.dispose()
    engine.dispose()
