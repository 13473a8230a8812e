"""Money that adds up over many orders (run totals, payouts, budgets, ledger entries) as bigint

Revision ID: 4a11416acebc
Revises: 5860fd23795f
Create Date: 2026-11-25 23:13:05.233832

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '4a11416acebc'
down_revision = '5860fd23795f'
branch_labels = None
depends_on = None

# table -> (column, nullable, server default)
COLUMNS = {
    'farm_premium_usage': [('used', False, "'0'")],
    'ledger_entries': [('amount', False, None)],
    'payout_premiums': [('amount', False, None)],
    'payout_runs': [('total', False, "'0'")],
    'payouts': [
        (name, False, None)
        for name in ('grams', 'sales', 'commission', 'premiums', 'refunds', 'adjustments', 'amount')
    ],
    'premium_programmes': [('budget_cap', True, None), ('farm_cap', True, None), ('budget_used', False, "'0'")],
    'reconciliation_runs': [('fees_total', False, "'0'")],
    'transfer_reversals': [('amount', False, None)],
}


def _retype(old, new):
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, nullable, default in columns:
                batch_op.alter_column(
                    name,
                    existing_type=old,
                    type_=new,
                    existing_nullable=nullable,
                    existing_server_default=sa.text(default) if default else None,
                )


def upgrade():
    _retype(sa.INTEGER(), sa.BigInteger())


def downgrade():
    _retype(sa.BigInteger(), sa.INTEGER())
