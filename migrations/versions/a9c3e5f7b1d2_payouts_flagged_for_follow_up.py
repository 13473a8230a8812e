"""payouts: a failed transfer flagged for follow-up by an operator, with a note

Revision ID: a9c3e5f7b1d2
Revises: c2f8d4a6e9b3
Create Date: 2026-11-30 21:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a9c3e5f7b1d2'
down_revision = 'c2f8d4a6e9b3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flag_note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('flagged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('flagged_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_payouts_flagged_by_id_users'), 'users', ['flagged_by_id'], ['id'])


def downgrade():
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_payouts_flagged_by_id_users'), type_='foreignkey')
        batch_op.drop_column('flagged_by_id')
        batch_op.drop_column('flagged_at')
        batch_op.drop_column('flag_note')
