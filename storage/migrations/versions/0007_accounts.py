"""accounts across platforms (users.account_id, users.role), link codes, the audit log, jobs' GPU-seconds,
places (a chat's settings) and the safety score and decision of each output

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch.create_foreign_key(op.f("fk_users_account_id_users"), "users", ["account_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_users_account", ["account_id"], unique=False)
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("gpu_seconds", sa.Float(), nullable=True))
        batch.create_index("ix_jobs_user_finished", ["user_id", "finished_at"], unique=False)
    op.create_table(
        "link_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["users.id"], name=op.f("fk_link_codes_account_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_link_codes")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("platform_user_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_audit_log_actor_id_users"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action", "at"], unique=False)
    op.create_index("ix_audit_log_actor", "audit_log", ["actor_id", "at"], unique=False)
    op.create_table(
        "places",
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("chat_id", sa.String(length=128), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], name=op.f("fk_places_updated_by_users"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("platform", "chat_id", name=op.f("pk_places")),
    )
    with op.batch_alter_table("job_outputs") as batch:
        batch.add_column(sa.Column("safety_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("safety_action", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_outputs") as batch:
        batch.drop_column("safety_action")
        batch.drop_column("safety_score")
    op.drop_table("places")
    op.drop_index("ix_audit_log_actor", table_name="audit_log")
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("link_codes")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_user_finished")
        batch.drop_column("gpu_seconds")
    with op.batch_alter_table("users") as batch:
        batch.drop_index("ix_users_account")
        batch.drop_constraint(op.f("fk_users_account_id_users"), type_="foreignkey")
        batch.drop_column("role")
        batch.drop_column("account_id")
