"""Payout accounts count the tries to make their Express account that Stripe
failed on, so the next try uses a new idempotency key

Revision ID: d2a7c5e9b4f1
Revises: 61cf1b80970e
Create Date: 2026-11-30 16:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd2a7c5e9b4f1'
down_revision = '61cf1b80970e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payout_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('account_attempts', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('payout_accounts', schema=None) as batch_op:
        batch_op.drop_column('account_attempts')
