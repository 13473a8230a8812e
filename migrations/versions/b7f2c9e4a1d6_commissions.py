"""commissions: stations and hosts who sell for farmers, their entries and payouts

Revision ID: b7f2c9e4a1d6
Revises: d4e1a7c9b2f5
Create Date: 2026-12-01 03:16:19.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7f2c9e4a1d6'
down_revision = 'd4e1a7c9b2f5'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sellers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('station', 'host', name='seller_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('fulfilment_point_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('code', sa.String(length=32), nullable=True),
    sa.Column('rate_bp', sa.Integer(), nullable=True),
    sa.Column('per_order', sa.BigInteger(), nullable=True),
    sa.Column('active', sa.Boolean(), server_default='1', nullable=False),
    sa.Column('bank_account_holder', sa.String(length=120), nullable=True),
    sa.Column('bank_name', sa.String(length=120), nullable=True),
    sa.Column('bank_account_number', sa.String(length=34), nullable=True),
    sa.Column('bank_account_masked', sa.String(length=34), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("(kind = 'station' AND fulfilment_point_id IS NOT NULL AND user_id IS NULL AND code IS NULL) OR (kind = 'host' AND user_id IS NOT NULL AND code IS NOT NULL AND fulfilment_point_id IS NULL AND per_order IS NULL)", name=op.f('ck_sellers_station_or_host')),
    sa.CheckConstraint('(rate_bp IS NULL) <> (per_order IS NULL)', name=op.f('ck_sellers_one_rate')),
    sa.CheckConstraint('per_order IS NULL OR per_order >= 0', name=op.f('ck_sellers_per_order_not_negative')),
    sa.CheckConstraint('rate_bp IS NULL OR rate_bp BETWEEN 0 AND 10000', name=op.f('ck_sellers_rate_bp_in_range')),
    sa.ForeignKeyConstraint(['fulfilment_point_id'], ['fulfilment_points.id'], name=op.f('fk_sellers_fulfilment_point_id_fulfilment_points')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_sellers_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sellers')),
    sa.UniqueConstraint('code', name=op.f('uq_sellers_code')),
    sa.UniqueConstraint('fulfilment_point_id', name=op.f('uq_sellers_fulfilment_point_id')),
    sa.UniqueConstraint('user_id', name=op.f('uq_sellers_user_id'))
    )
    op.create_table('seller_payouts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('seller_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('orders', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('awaiting_confirmation', 'paid', name='seller_payout_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('bank_reference', sa.String(length=120), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_seller_payouts_pays_something')),
    sa.ForeignKeyConstraint(['run_id'], ['payout_runs.id'], name=op.f('fk_seller_payouts_run_id_payout_runs')),
    sa.ForeignKeyConstraint(['seller_id'], ['sellers.id'], name=op.f('fk_seller_payouts_seller_id_sellers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seller_payouts')),
    sa.UniqueConstraint('run_id', 'seller_id', name=op.f('uq_seller_payouts_run_id_seller_id'))
    )
    with op.batch_alter_table('seller_payouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seller_payouts_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_seller_payouts_seller_id'), ['seller_id'], unique=False)

    op.create_table('seller_skips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('seller_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['payout_runs.id'], name=op.f('fk_seller_skips_run_id_payout_runs')),
    sa.ForeignKeyConstraint(['seller_id'], ['sellers.id'], name=op.f('fk_seller_skips_seller_id_sellers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_seller_skips')),
    sa.UniqueConstraint('run_id', 'seller_id', name=op.f('uq_seller_skips_run_id_seller_id'))
    )
    with op.batch_alter_table('seller_skips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_seller_skips_run_id'), ['run_id'], unique=False)

    op.create_table('commission_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.Column('seller_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('earned', 'reversed', 'payout', name='commission_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('order_line_id', sa.Integer(), nullable=True),
    sa.Column('refund_id', sa.Integer(), nullable=True),
    sa.Column('produce', sa.BigInteger(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("(kind = 'earned' AND amount > 0) OR (kind <> 'earned' AND amount < 0)", name=op.f('ck_commission_entries_earned_adds')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_commission_entries_order_id_orders')),
    sa.ForeignKeyConstraint(['order_line_id'], ['order_lines.id'], name=op.f('fk_commission_entries_order_line_id_order_lines')),
    sa.ForeignKeyConstraint(['payout_id'], ['seller_payouts.id'], name=op.f('fk_commission_entries_payout_id_seller_payouts')),
    sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'], name=op.f('fk_commission_entries_refund_id_refunds')),
    sa.ForeignKeyConstraint(['seller_id'], ['sellers.id'], name=op.f('fk_commission_entries_seller_id_sellers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commission_entries')),
    sa.UniqueConstraint('reference', name=op.f('uq_commission_entries_reference'))
    )
    with op.batch_alter_table('commission_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_commission_entries_order_id'), ['order_id'], unique=False)
        batch_op.create_index('ix_commission_entries_order_line_id', ['order_line_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_commission_entries_payout_id'), ['payout_id'], unique=False)
        batch_op.create_index('ix_commission_entries_seller_unpaid', ['seller_id'], unique=False, postgresql_where='payout_id IS NULL')

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('host_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('attribution_code', sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f('ix_orders_host_id'), ['host_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_orders_host_id_sellers'), 'sellers', ['host_id'], ['id'])



def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_orders_host_id_sellers'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_orders_host_id'))
        batch_op.drop_column('attribution_code')
        batch_op.drop_column('host_id')

    with op.batch_alter_table('commission_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_commission_entries_seller_unpaid', postgresql_where='payout_id IS NULL')
        batch_op.drop_index(batch_op.f('ix_commission_entries_payout_id'))
        batch_op.drop_index('ix_commission_entries_order_line_id')
        batch_op.drop_index(batch_op.f('ix_commission_entries_order_id'))

    op.drop_table('commission_entries')
    with op.batch_alter_table('seller_skips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seller_skips_run_id'))

    op.drop_table('seller_skips')
    with op.batch_alter_table('seller_payouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_seller_payouts_seller_id'))
        batch_op.drop_index(batch_op.f('ix_seller_payouts_run_id'))

    op.drop_table('seller_payouts')
    op.drop_table('sellers')
