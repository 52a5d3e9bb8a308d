"""training runs, DreamBooth class pictures, progress notes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("progress_note", sa.Text(), nullable=True))
    op.create_table(
        "training_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("checkpoint_blob", sa.String(length=80), nullable=True),
        sa.Column("checkpoint_step", sa.Integer(), nullable=False),
        sa.Column("checkpoint_at", sa.DateTime(), nullable=True),
        sa.Column("captions", sa.JSON(), nullable=True),
        sa.Column("losses", sa.JSON(), nullable=False),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_training_runs_asset_id_assets"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_training_runs_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_training_runs_owner_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
        sa.UniqueConstraint("job_id", name=op.f("uq_training_runs_job_id")),
    )
    op.create_index("ix_training_runs_owner", "training_runs", ["owner_id", "created_at"], unique=False)
    op.create_table(
        "class_image_sets",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("blobs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_class_image_sets")),
    )


def downgrade() -> None:
    op.drop_table("class_image_sets")
    op.drop_index("ix_training_runs_owner", table_name="training_runs")
    op.drop_table("training_runs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("progress_note")
