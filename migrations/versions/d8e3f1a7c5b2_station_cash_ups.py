"""stations: the daily cash-up of each station's cash and the deposit an
operator confirms; payments know the cash-up that counted them

Revision ID: d8e3f1a7c5b2
Revises: a9c3e5f7b1d2
Create Date: 2026-11-30 21:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd8e3f1a7c5b2'
down_revision = 'a9c3e5f7b1d2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('cash_ups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fulfilment_point_id', sa.Integer(), nullable=False),
    sa.Column('business_day', sa.Date(), nullable=False),
    sa.Column('expected', sa.BigInteger(), nullable=False),
    sa.Column('counted', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('submitted', 'short', 'over', 'deposited', name='cash_up_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('submitted_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('bank_reference', sa.String(length=255), nullable=True),
    sa.Column('deposited', sa.BigInteger(), nullable=True),
    sa.Column('deposit_note', sa.Text(), nullable=True),
    sa.Column('confirmed_by', sa.Integer(), nullable=True),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('expected >= 0', name=op.f('ck_cash_ups_expected_not_negative')),
    sa.CheckConstraint('counted >= 0', name=op.f('ck_cash_ups_counted_not_negative')),
    sa.CheckConstraint('deposited > 0', name=op.f('ck_cash_ups_deposited_positive')),
    sa.ForeignKeyConstraint(['fulfilment_point_id'], ['fulfilment_points.id'], name=op.f('fk_cash_ups_fulfilment_point_id_fulfilment_points')),
    sa.ForeignKeyConstraint(['submitted_by'], ['users.id'], name=op.f('fk_cash_ups_submitted_by_users')),
    sa.ForeignKeyConstraint(['confirmed_by'], ['users.id'], name=op.f('fk_cash_ups_confirmed_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cash_ups')),
    sa.UniqueConstraint('fulfilment_point_id', 'business_day', name=op.f('uq_cash_ups_fulfilment_point_id_business_day')),
    sa.UniqueConstraint('bank_reference', name=op.f('uq_cash_ups_bank_reference'))
    )
    with op.batch_alter_table('cash_ups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cash_ups_fulfilment_point_id'), ['fulfilment_point_id'], unique=False)
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cash_up_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_payments_cash_up_id'), ['cash_up_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_payments_cash_up_id_cash_ups'), 'cash_ups', ['cash_up_id'], ['id'])


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_payments_cash_up_id_cash_ups'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_payments_cash_up_id'))
        batch_op.drop_column('cash_up_id')
    with op.batch_alter_table('cash_ups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cash_ups_fulfilment_point_id'))
    op.drop_table('cash_ups')
