"""Payout accounts keep the time of Stripe's newest account.updated as a
64-bit number, so events after January 2038 still fit

Revision ID: a3c9e1f7d2b8
Revises: f3a8d6b2c4e7
Create Date: 2026-11-30 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a3c9e1f7d2b8'
down_revision = 'f3a8d6b2c4e7'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payout_accounts', schema=None) as batch_op:
        batch_op.alter_column('stripe_state_at', existing_type=sa.Integer(), type_=sa.BigInteger())


def downgrade():
    with op.batch_alter_table('payout_accounts', schema=None) as batch_op:
        batch_op.alter_column('stripe_state_at', existing_type=sa.BigInteger(), type_=sa.Integer())
