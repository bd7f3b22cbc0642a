"""flows and flow_versions record the rules version each decision was made under

Revision ID: 0003
Revises: 0002

A decision depends on the facts *and* on the rules (the policy data: exemptions, the operational
policy guidance, successor bodies). ``rules_version`` names the rules (``optout.policy.sources.
rules_version()``: the human version and a hash of the data files), so ``optout flow list
--reassess`` can say which registered flows were decided under other rules and would now get a
different answer. Every decision recorded before this column existed was made under rules "1".
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flows", sa.Column("rules_version", sa.String(length=64), nullable=True))
    op.add_column("flow_versions", sa.Column("rules_version", sa.String(length=64), nullable=True))
    op.execute("UPDATE flows SET rules_version = '1' WHERE decision IS NOT NULL")
    op.execute("UPDATE flow_versions SET rules_version = '1' WHERE decision IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("flow_versions") as batch:
        batch.drop_column("rules_version")
    with op.batch_alter_table("flows") as batch:
        batch.drop_column("rules_version")
