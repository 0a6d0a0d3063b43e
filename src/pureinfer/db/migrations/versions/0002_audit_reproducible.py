"""audit: model, sampling (with the seed used), the worker's prompt hash, the response hash,
attempts, strategy, and the full messages and response text (--audit-prompts full)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def columns() -> list[sa.Column]:  # type: ignore[type-arg]
    """New Column objects each call (a Column belongs to one table)."""
    return [
        sa.Column("model_used", sa.String(200), nullable=True),
        sa.Column("sampling", sa.JSON, nullable=True),
        sa.Column("prompt_sha256", sa.String(64), nullable=True),
        sa.Column("response_sha256", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=True),
        sa.Column("strategy", sa.String(300), nullable=True),
        sa.Column("messages", sa.JSON, nullable=True),
        sa.Column("response_text", sa.Text, nullable=True),
    ]


def upgrade() -> None:
    # Nullable columns only: rows written before this revision keep NULL there. ADD COLUMN works
    # in place on SQLite and PostgreSQL alike.
    for column in columns():
        op.add_column("audit_records", column)


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        for column in reversed(columns()):
            batch.drop_column(column.name)
