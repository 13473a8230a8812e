"""Payments keep the charge their capture made, for transfers to draw on

Revision ID: b3d6f0a9c2e7
Revises: b4e8f1a2c6d3
Create Date: 2026-11-30 15:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b3d6f0a9c2e7'
down_revision = 'b4e8f1a2c6d3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stripe_charge_id', sa.String(length=255), nullable=True))


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_column('stripe_charge_id')
