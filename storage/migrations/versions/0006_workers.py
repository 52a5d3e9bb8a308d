"""workers (what /admin status shows), an index for claiming compatible jobs together, the claim index in claim order

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("owner", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=120), nullable=False),
        sa.Column("gpu", sa.String(length=16), nullable=True),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("loaded_model", sa.String(length=200), nullable=True),
        sa.Column("jobs", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_workers")),
    )
    op.create_index("ix_jobs_batch", "jobs", ["status", "batch_key", sa.text("priority DESC"), "fair_round", "id"], unique=False)
    # the claim's index in claim order (highest priority first), so a claim reads its first row
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.create_index("ix_jobs_claim", "jobs", ["status", sa.text("priority DESC"), "fair_round", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.create_index("ix_jobs_claim", "jobs", ["status", "priority", "fair_round", "id"], unique=False)
    op.drop_index("ix_jobs_batch", table_name="jobs")
    op.drop_table("workers")
