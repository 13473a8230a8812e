"""Payments know when their card hold lapses, when the farm and operators
were warned, and by when a buyer whose hold lapsed must pay again

Revision ID: b4e8f1a2c6d3
Revises: a9d3f27c5b10
Create Date: 2026-11-30 15:00:00.000000

"""
from datetime import timedelta

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b4e8f1a2c6d3'
down_revision = 'a9d3f27c5b10'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authorised_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('hold_warned_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('renew_by', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_payments_authorised_until'), ['authorised_until'], unique=False)
        batch_op.create_index(batch_op.f('ix_payments_renew_by'), ['renew_by'], unique=False)
    # Card holds already authorised: Stripe's seven days from the payment's
    # last change (its authorisation).
    payments = sa.table(
        'payments',
        sa.column('id', sa.Integer),
        sa.column('provider', sa.String),
        sa.column('status', sa.String),
        sa.column('updated_at', sa.DateTime(timezone=True)),
        sa.column('authorised_until', sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    held = bind.execute(
        sa.select(payments.c.id, payments.c.updated_at).where(
            payments.c.provider == 'stripe', payments.c.status == 'authorised'
        )
    ).all()
    for payment_id, updated_at in held:
        bind.execute(
            payments.update()
            .where(payments.c.id == payment_id)
            .values(authorised_until=updated_at + timedelta(days=7))
        )


def downgrade():
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_renew_by'))
        batch_op.drop_index(batch_op.f('ix_payments_authorised_until'))
        batch_op.drop_column('renew_by')
        batch_op.drop_column('hold_warned_at')
        batch_op.drop_column('authorised_until')
