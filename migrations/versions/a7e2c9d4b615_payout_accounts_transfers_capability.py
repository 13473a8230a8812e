"""Payout accounts: whether Stripe accepts transfers (the transfers capability)

Revision ID: a7e2c9d4b615
Revises: f5d1c3a8e927
Create Date: 2026-11-30 13:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7e2c9d4b615'
down_revision = 'f5d1c3a8e927'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payout_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfers_active', sa.Boolean(), server_default='0', nullable=False))
    # The best knowledge until the next account.updated: accounts that could pay out.
    op.execute(sa.text("UPDATE payout_accounts SET transfers_active = payouts_enabled"))


def downgrade():
    with op.batch_alter_table('payout_accounts', schema=None) as batch_op:
        batch_op.drop_column('transfers_active')
