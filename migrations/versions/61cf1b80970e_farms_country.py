"""Farms say which country they are in (CN, mainland China, for those so
far), so Stripe is offered only to farms Stripe Connect can pay

Revision ID: 61cf1b80970e
Revises: 16f1a6706111
Create Date: 2026-11-30 16:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '61cf1b80970e'
down_revision = '16f1a6706111'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('farms', schema=None) as batch_op:
        batch_op.add_column(sa.Column('country', sa.String(length=2), server_default='CN', nullable=False))


def downgrade():
    with op.batch_alter_table('farms', schema=None) as batch_op:
        batch_op.drop_column('country')
