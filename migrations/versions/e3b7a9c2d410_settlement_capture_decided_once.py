"""Settlement: a capture decided once (payments.capturing, capture_amount), the
premium a line was granted, refunds that return no money

Revision ID: e3b7a9c2d410
Revises: c1a5e0b64b1f
Create Date: 2026-11-30 12:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e3b7a9c2d410'
down_revision = 'c1a5e0b64b1f'
branch_labels = None
depends_on = None

OLD_STATUSES = ('creating', 'requires_payment', 'failed', 'authorised', 'captured', 'cancelled')
NEW_STATUSES = ('creating', 'requires_payment', 'failed', 'authorised', 'capturing', 'captured', 'cancelled')


def _statuses(values):
    return "status IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('capture_amount', sa.BigInteger(), nullable=True))
        batch_op.drop_constraint(op.f('ck_payments_payment_status'), type_='check')
        batch_op.create_check_constraint('payment_status', _statuses(NEW_STATUSES))
    # A payment captured before this revision captured its lines' total.
    op.execute("UPDATE payments SET capture_amount = amount_captured WHERE status = 'captured'")
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_refunds_amount_positive'), type_='check')
        batch_op.create_check_constraint('amount_not_negative', 'amount >= 0')
    with op.batch_alter_table('line_premiums', schema=None) as batch_op:
        batch_op.add_column(sa.Column('granted', sa.BigInteger(), server_default='0', nullable=False))
    # What a line holds now is the most it was granted that is still known.
    op.execute("UPDATE line_premiums SET granted = amount")


def downgrade():
    with op.batch_alter_table('line_premiums', schema=None) as batch_op:
        batch_op.drop_column('granted')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_refunds_amount_not_negative'), type_='check')
        batch_op.create_check_constraint('amount_positive', 'amount > 0')
    op.execute("UPDATE payments SET status = 'authorised' WHERE status = 'capturing'")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payments_payment_status'), type_='check')
        batch_op.create_check_constraint('payment_status', _statuses(OLD_STATUSES))
        batch_op.drop_column('capture_amount')
