"""Payouts keep the bank details they pay to: a farm's or seller's change
after the run no longer moves a payout its run decided

Revision ID: b7d2e5a9c3f1
Revises: e4a1c9b7d5f2
Create Date: 2026-12-02 08:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7d2e5a9c3f1'
down_revision = 'e4a1c9b7d5f2'
branch_labels = None
depends_on = None

COLUMNS = (
    ('bank_account_holder', 120),
    ('bank_name', 120),
    ('bank_account_number', 34),
    ('bank_account_masked', 34),
)


def upgrade():
    for table in ('payouts', 'seller_payouts'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, length in COLUMNS:
                batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    # Payouts still to be paid get the details their bank file has listed so
    # far; what paid ones went to was never recorded, and stays unknown.
    for name, _ in COLUMNS:
        op.execute(
            f"UPDATE payouts SET {name} = (SELECT {name} FROM payout_accounts"
            " WHERE payout_accounts.farm_id = payouts.farm_id)"
            " WHERE method = 'bank_transfer' AND status = 'awaiting_confirmation'"
        )
        op.execute(
            f"UPDATE seller_payouts SET {name} = (SELECT {name} FROM sellers"
            " WHERE sellers.id = seller_payouts.seller_id)"
            " WHERE status = 'awaiting_confirmation'"
        )


def downgrade():
    for table in ('payouts', 'seller_payouts'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in reversed(COLUMNS):
                batch_op.drop_column(name)
