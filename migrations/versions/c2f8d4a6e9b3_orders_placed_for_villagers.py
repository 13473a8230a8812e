"""stations: orders placed for villagers (confirmed by a texted code, paid in
cash on collection): accounts without email or password, orders.placed_by_id
and the confirmed status, payments taken in cash at a station

Revision ID: c2f8d4a6e9b3
Revises: b7d2e5a9c4f1
Create Date: 2026-11-30 20:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c2f8d4a6e9b3'
down_revision = 'b7d2e5a9c4f1'
branch_labels = None
depends_on = None

OLD_STATUSES = (
    'pending_payment', 'paid', 'packed', 'shipped', 'ready_for_pickup', 'collected', 'delivered', 'completed',
    'cancelled', 'expired',
)
NEW_STATUSES = ('pending_payment', 'confirmed', *OLD_STATUSES[1:])


def _statuses(values):
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('email', existing_type=sa.String(length=254), nullable=True)
        batch_op.alter_column('password_hash', existing_type=sa.String(length=255), nullable=True)
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('placed_by_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_orders_placed_by_id'), ['placed_by_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_orders_placed_by_id_users'), 'users', ['placed_by_id'], ['id'])
        batch_op.drop_constraint(op.f('ck_orders_order_status'), type_='check')
        batch_op.create_check_constraint('order_status', _statuses(NEW_STATUSES))
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cash_point_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cash_received_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cash_received_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_payments_cash_point_id'), ['cash_point_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_payments_cash_point_id_fulfilment_points'), 'fulfilment_points', ['cash_point_id'], ['id']
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_payments_cash_received_by_users'), 'users', ['cash_received_by'], ['id']
        )
    op.create_table('confirmation_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('sent', sa.Integer(), server_default='1', nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_confirmation_codes_order_id_orders'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_confirmation_codes')),
    sa.UniqueConstraint('order_id', name=op.f('uq_confirmation_codes_order_id'))
    )


def downgrade():
    op.drop_table('confirmation_codes')
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_payments_cash_received_by_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_payments_cash_point_id_fulfilment_points'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_payments_cash_point_id'))
        batch_op.drop_column('cash_received_at')
        batch_op.drop_column('cash_received_by')
        batch_op.drop_column('cash_point_id')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_orders_order_status'), type_='check')
        batch_op.create_check_constraint('order_status', _statuses(OLD_STATUSES))
        batch_op.drop_constraint(batch_op.f('fk_orders_placed_by_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_orders_placed_by_id'))
        batch_op.drop_column('placed_by_id')
    # Accounts opened for villagers have no address or password to keep.
    op.execute("DELETE FROM users WHERE email IS NULL OR password_hash IS NULL")
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('password_hash', existing_type=sa.String(length=255), nullable=False)
        batch_op.alter_column('email', existing_type=sa.String(length=254), nullable=False)
