"""audit: what an image request needs to be checked and reproduced: the worker type that
served it, the image parameters, the seeds used, the asset URLs and the timings

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def columns() -> list[sa.Column]:  # type: ignore[type-arg]
    """New Column objects each call (a Column belongs to one table)."""
    return [
        sa.Column("worker_type", sa.String(20), nullable=True),
        # width, height, steps, cfg_scale, sampler, num_images, negative prompt preview, ...
        sa.Column("image_params", sa.JSON, nullable=True),
        sa.Column("seeds", sa.JSON, nullable=True),
        sa.Column("asset_urls", sa.JSON, nullable=True),
        # the worker's and the gateway's timings (generation_time, enhance time, ...)
        sa.Column("timings", sa.JSON, nullable=True),
    ]


def upgrade() -> None:
    # Nullable columns only, as in 0002: older rows keep NULL; ADD COLUMN in place on both stores.
    for column in columns():
        op.add_column("audit_records", column)


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        for column in reversed(columns()):
            batch.drop_column(column.name)
