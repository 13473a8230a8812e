"""an order not paid yet asks for what its live lines can reach: an
unpaid order that lost a part kept the max_total it was placed with, and
its offline payment (or an intent not made yet) asked for it; both are
brought down to the lines of its parts not cancelled

Revision ID: e4a1c9b7d5f2
Revises: d2b8f6a4c1e3
Create Date: 2026-12-02 04:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'e4a1c9b7d5f2'
down_revision = 'd2b8f6a4c1e3'
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "UPDATE orders SET max_total = (SELECT coalesce(sum(order_lines.max_amount), 0) FROM order_lines "
        "JOIN order_parts ON order_parts.id = order_lines.part_id "
        "WHERE order_lines.order_id = orders.id AND order_parts.status <> 'cancelled') "
        "WHERE status = 'pending_payment'"
    )
    op.execute(
        "UPDATE payments SET amount = (SELECT max_total FROM orders WHERE orders.id = payments.order_id) "
        "WHERE (status = 'creating' OR (provider = 'offline' AND status = 'requires_payment')) "
        "AND EXISTS (SELECT 1 FROM orders WHERE orders.id = payments.order_id AND orders.status = 'pending_payment')"
    )


def downgrade():
    # What each order asked for before is not kept, and the older schema
    # reads these amounts as well: nothing to undo.
    pass
