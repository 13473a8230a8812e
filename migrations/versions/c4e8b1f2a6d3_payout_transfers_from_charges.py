"""A Stripe payout is paid by one transfer per order's charge it draws on
(source_transaction) and one from the balance for the rest. Each Stripe
payout made before gets one transfer from the balance (its own, once
made), and each reversal names it.

Revision ID: c4e8b1f2a6d3
Revises: b3d6f0a9c2e7
Create Date: 2026-11-30 15:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c4e8b1f2a6d3'
down_revision = 'b3d6f0a9c2e7'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('payout_transfers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('stripe_charge_id', sa.String(length=255), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('stripe_transfer_id', sa.String(length=255), nullable=True),
    sa.Column('made_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount > 0', name=op.f('ck_payout_transfers_amount_positive')),
    sa.CheckConstraint('(order_id IS NULL) = (stripe_charge_id IS NULL)', name=op.f('ck_payout_transfers_charge_of_its_order')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_payout_transfers_order_id_orders')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_transfers_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_transfers')),
    sa.UniqueConstraint('payout_id', 'order_id', name=op.f('uq_payout_transfers_payout_id_order_id')),
    sa.UniqueConstraint('stripe_transfer_id', name=op.f('uq_payout_transfers_stripe_transfer_id'))
    )
    with op.batch_alter_table('payout_transfers', schema=None) as batch_op:
        batch_op.create_index('ix_payout_transfers_stripe_charge_id', ['stripe_charge_id'], unique=False, postgresql_where='stripe_charge_id IS NOT NULL')

    # Every Stripe payout so far was paid (or is to be paid) by one transfer
    # from the balance, keyed `payout-<id>`.
    op.execute(
        "INSERT INTO payout_transfers (payout_id, amount, stripe_transfer_id, made_at) "
        "SELECT id, amount, stripe_transfer_id, CASE WHEN stripe_transfer_id IS NULL THEN NULL ELSE paid_at END "
        "FROM payouts WHERE method = 'stripe'"
    )

    with op.batch_alter_table('transfer_reversals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('transfer_id', sa.Integer(), nullable=True))
    op.execute(
        "UPDATE transfer_reversals SET transfer_id = "
        "(SELECT t.id FROM payout_transfers t WHERE t.payout_id = transfer_reversals.payout_id)"
    )
    with op.batch_alter_table('transfer_reversals', schema=None) as batch_op:
        batch_op.alter_column('transfer_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f('ix_transfer_reversals_transfer_id'), ['transfer_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_transfer_reversals_transfer_id_payout_transfers'), 'payout_transfers', ['transfer_id'], ['id'])


def downgrade():
    with op.batch_alter_table('transfer_reversals', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_transfer_reversals_transfer_id_payout_transfers'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_transfer_reversals_transfer_id'))
        batch_op.drop_column('transfer_id')

    with op.batch_alter_table('payout_transfers', schema=None) as batch_op:
        batch_op.drop_index('ix_payout_transfers_stripe_charge_id', postgresql_where='stripe_charge_id IS NOT NULL')

    op.drop_table('payout_transfers')
