"""Accounts are confirmed by a link emailed to their address; the accounts
made before (all of them confirmed by whoever made them) count as confirmed

Revision ID: e5b1c7d3a9f2
Revises: d2a7c5e9b4f1
Create Date: 2026-12-08 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5b1c7d3a9f2'
down_revision = 'd2a7c5e9b4f1'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE users SET confirmed_at = created_at")


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('confirmed_at')
