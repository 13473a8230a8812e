"""Farms record when they were first verified: the listings of a farm
suspended before it ever was stay hidden. Farms verified now, and suspended
ones that sold (only a verified farm could), count as verified before

Revision ID: f3a8d6b2c4e7
Revises: e5b1c7d3a9f2
Create Date: 2026-12-08 11:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f3a8d6b2c4e7'
down_revision = 'e5b1c7d3a9f2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('farms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE farms SET verified_at = updated_at WHERE status = 'verified' "
        "OR (status = 'suspended' AND EXISTS (SELECT 1 FROM order_lines WHERE order_lines.farm_id = farms.id))"
    )


def downgrade():
    with op.batch_alter_table('farms', schema=None) as batch_op:
        batch_op.drop_column('verified_at')
