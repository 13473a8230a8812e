"""seller payouts take a bank reference as long as a farm's payout takes
(255 characters, as the confirmation accepts), rather than 120

Revision ID: c6a4e2b9d7f3
Revises: c5a1e7d3f9b2
Create Date: 2026-12-02 12:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c6a4e2b9d7f3'
down_revision = 'c5a1e7d3f9b2'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('seller_payouts', schema=None) as batch_op:
        batch_op.alter_column('bank_reference', existing_type=sa.String(length=120), type_=sa.String(length=255))


def downgrade():
    # A longer reference confirmed since keeps its first 120 characters.
    op.execute("UPDATE seller_payouts SET bank_reference = substr(bank_reference, 1, 120) "
               "WHERE length(bank_reference) > 120")
    with op.batch_alter_table('seller_payouts', schema=None) as batch_op:
        batch_op.alter_column('bank_reference', existing_type=sa.String(length=255), type_=sa.String(length=120))
