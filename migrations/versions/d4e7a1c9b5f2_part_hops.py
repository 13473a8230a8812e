"""part_hops: the route of each shipped pickup part through fulfilment points
(a county centre, then the village station), scanned in and out at each;
parts shipped before get their one hop, the order's point

Revision ID: d4e7a1c9b5f2
Revises: e6a2c8f4b1d9
Create Date: 2026-11-30 21:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd4e7a1c9b5f2'
down_revision = 'e6a2c8f4b1d9'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('part_hops',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('part_id', sa.Integer(), nullable=False),
    sa.Column('point_id', sa.Integer(), nullable=False),
    sa.Column('sequence', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_by_id', sa.Integer(), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['part_id'], ['order_parts.id'], name=op.f('fk_part_hops_part_id_order_parts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['point_id'], ['fulfilment_points.id'], name=op.f('fk_part_hops_point_id_fulfilment_points')),
    sa.ForeignKeyConstraint(['received_by_id'], ['users.id'], name=op.f('fk_part_hops_received_by_id_users')),
    sa.ForeignKeyConstraint(['dispatched_by_id'], ['users.id'], name=op.f('fk_part_hops_dispatched_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_part_hops')),
    sa.UniqueConstraint('part_id', 'sequence', name=op.f('uq_part_hops_part_id_sequence')),
    sa.UniqueConstraint('part_id', 'point_id', name=op.f('uq_part_hops_part_id_point_id')),
    )
    op.create_index('ix_part_hops_point_dispatched', 'part_hops', ['point_id', 'dispatched_at'], unique=False)
    # Pickup parts already shipped went straight to the order's point: one
    # hop, received when the part arrived.
    op.execute(
        "INSERT INTO part_hops (part_id, point_id, sequence, received_at) "
        "SELECT order_parts.id, orders.fulfilment_point_id, 1, order_parts.arrived_at "
        "FROM order_parts JOIN orders ON orders.id = order_parts.order_id "
        "WHERE orders.fulfilment = 'pickup' AND order_parts.shipped_at IS NOT NULL"
    )


def downgrade():
    op.drop_index('ix_part_hops_point_dispatched', table_name='part_hops')
    op.drop_table('part_hops')
