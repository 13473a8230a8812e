"""Reconciliation compares like with like across currencies: each item says
the currency of each side, what Stripe settled and at what rate, and why a
record could not be compared (currency_differs); each run its settlement
currency

Revision ID: 16f1a6706111
Revises: fdb3f8820931
Create Date: 2026-11-30 16:10:00.000000

"""
from alembic import op
import sqlalchemy as sa
from flask import current_app


# revision identifiers, used by Alembic.
revision = '16f1a6706111'
down_revision = 'fdb3f8820931'
branch_labels = None
depends_on = None

OLD_OUTCOMES = ('matched', 'missing_at_gateway', 'missing_in_ledger', 'amount_differs', 'fee')
NEW_OUTCOMES = ('matched', 'missing_at_gateway', 'missing_in_ledger', 'amount_differs', 'currency_differs', 'fee')


def _outcomes(values):
    return "outcome IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade():
    # Runs and items so far were all in the one marketplace currency.
    currency = current_app.config["MARKET_CURRENCY"]
    with op.batch_alter_table('reconciliation_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('settlement_currency', sa.String(length=3), nullable=True))
    op.execute(sa.text("UPDATE reconciliation_runs SET settlement_currency = :c").bindparams(c=currency))
    with op.batch_alter_table('reconciliation_runs', schema=None) as batch_op:
        batch_op.alter_column('settlement_currency', existing_type=sa.String(length=3), nullable=False)
    with op.batch_alter_table('reconciliation_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('gateway_currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('ledger_currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('settlement_amount', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('settlement_currency', sa.String(length=3), nullable=True))
        batch_op.add_column(sa.Column('exchange_rate', sa.Numeric(precision=24, scale=12), nullable=True))
        batch_op.add_column(sa.Column('reason', sa.Text(), nullable=True))
        batch_op.drop_constraint(op.f('ck_reconciliation_items_reconciliation_outcome'), type_='check')
        batch_op.create_check_constraint('reconciliation_outcome', _outcomes(NEW_OUTCOMES))
    op.execute(
        sa.text("UPDATE reconciliation_items SET gateway_currency = :c WHERE gateway_amount IS NOT NULL").bindparams(
            c=currency
        )
    )
    op.execute(
        sa.text("UPDATE reconciliation_items SET ledger_currency = :c WHERE ledger_amount IS NOT NULL").bindparams(
            c=currency
        )
    )


def downgrade():
    # An outcome the older schema has no word for was, there, an amount that differs.
    op.execute("UPDATE reconciliation_items SET outcome = 'amount_differs' WHERE outcome = 'currency_differs'")
    with op.batch_alter_table('reconciliation_items', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_reconciliation_items_reconciliation_outcome'), type_='check')
        batch_op.create_check_constraint('reconciliation_outcome', _outcomes(OLD_OUTCOMES))
        batch_op.drop_column('reason')
        batch_op.drop_column('exchange_rate')
        batch_op.drop_column('settlement_currency')
        batch_op.drop_column('settlement_amount')
        batch_op.drop_column('ledger_currency')
        batch_op.drop_column('gateway_currency')
    with op.batch_alter_table('reconciliation_runs', schema=None) as batch_op:
        batch_op.drop_column('settlement_currency')
