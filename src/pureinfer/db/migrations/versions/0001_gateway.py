"""gateway: templates, labels, generation counter, workers, audit

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "template_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("template_name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("enhancer_model", sa.String(100), nullable=False),
        sa.Column("target_model", sa.String(100), nullable=False),
        sa.Column("job_type", sa.String(50), nullable=False),
        sa.Column("use_case", sa.String(50), nullable=False),
        sa.Column("content_mode", sa.String(20), nullable=False),
        sa.Column("system_prompt", sa.Text, nullable=False),
        sa.Column("token_limit", sa.Integer, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("template_name", "version", name="uq_template_name_version"),
    )
    op.create_index("ix_template_selection", "template_versions",
                    ["target_model", "job_type", "use_case", "content_mode"])
    op.create_table(
        "template_labels",
        sa.Column("template_name", sa.String(200), primary_key=True),
        sa.Column("label", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    gen = op.create_table(
        "template_generation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(gen, [{"id": 1, "generation": 0}])
    op.create_table(
        "workers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(500), nullable=False, unique=True),
        sa.Column("worker_type", sa.String(20), nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("info", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "audit_records",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(50), nullable=False),
        sa.Column("caller_key_id", sa.String(32), nullable=True),
        sa.Column("template_name", sa.String(200), nullable=True),
        sa.Column("template_version", sa.Integer, nullable=True),
        sa.Column("fallback_level", sa.Integer, nullable=True),
        sa.Column("cache_hit", sa.Boolean, nullable=True),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("messages_sha256", sa.String(64), nullable=True),
        sa.Column("prompt_preview", sa.Text, nullable=True),
        sa.Column("response_preview", sa.Text, nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=True),
        sa.Column("tokens_generated", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error_code", sa.String(40), nullable=True),
    )
    op.create_index("ix_audit_created_at", "audit_records", ["created_at"])
    op.create_index("ix_audit_request_id", "audit_records", ["request_id"])


def downgrade() -> None:
    op.drop_table("audit_records")
    op.drop_table("workers")
    op.drop_table("template_generation")
    op.drop_table("template_labels")
    op.drop_index("ix_template_selection", "template_versions")
    op.drop_table("template_versions")
