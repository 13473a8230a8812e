"""a farm's payout method is its payout account's: a farm that changed
payout_method by PATCH after choosing an account, and so showed a method
the payout runs did not use, is given the account's

Revision ID: d2b8f6a4c1e3
Revises: c7e2a9f4b1d6
Create Date: 2026-12-02 01:30:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd2b8f6a4c1e3'
down_revision = 'c7e2a9f4b1d6'
branch_labels = None
depends_on = None


def upgrade():
    op.execute(
        "UPDATE farms SET payout_method = "
        "(SELECT method FROM payout_accounts WHERE payout_accounts.farm_id = farms.id) "
        "WHERE EXISTS (SELECT 1 FROM payout_accounts WHERE payout_accounts.farm_id = farms.id "
        "AND (farms.payout_method IS NULL OR payout_accounts.method <> farms.payout_method))"
    )


def downgrade():
    # The method each farm showed before is not kept, and the older schema
    # reads the account's as well as any: nothing to undo.
    pass
