"""compliance checklist tasks: status, owner, due date, notes and evidence per task

Revision ID: 0005
Revises: 0004

The web app's compliance checklists (002 PREPARING FOR COMPLIANCE; the 003 provider audit
checklist) are defined as data in ``optout/policy/checklist.yaml``; this table keeps only what the
organisation records against each task (``optout.policy.checklist``). Changes are audited.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "checklist_tasks",
        sa.Column("checklist", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_role", sa.String(length=16), nullable=True),
        sa.Column("due_date", sa.String(length=10), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.String(length=40), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("checklist", "task_id"),
    )


def downgrade() -> None:
    op.drop_table("checklist_tasks")
