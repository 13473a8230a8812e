"""Ledger accounts hold one currency each, so fees Stripe takes in its
settlement currency are booked in it; accounts so far are in the
marketplace currency

Revision ID: fdb3f8820931
Revises: c4e8b1f2a6d3
Create Date: 2026-11-30 16:00:00.000000

"""
from alembic import op
import sqlalchemy as sa
from flask import current_app


# revision identifiers, used by Alembic.
revision = 'fdb3f8820931'
down_revision = 'c4e8b1f2a6d3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=3), nullable=True))
    # Every account so far was posted in the one marketplace currency.
    op.execute(
        sa.text("UPDATE ledger_accounts SET currency = :currency").bindparams(
            currency=current_app.config["MARKET_CURRENCY"]
        )
    )
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.alter_column('currency', existing_type=sa.String(length=3), nullable=False)


def downgrade():
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.drop_column('currency')
