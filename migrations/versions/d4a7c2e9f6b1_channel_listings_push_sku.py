"""channel listings keep the SKU their stock is pushed under and the SKUs the
listing had before, so a channel is pushed an old SKU with no stock once the
listing is given another

Revision ID: d4a7c2e9f6b1
Revises: c9e4a2f6b8d1
Create Date: 2026-12-02 11:00:00.000000

"""
import warnings

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = 'd4a7c2e9f6b1'
down_revision = 'c9e4a2f6b8d1'
branch_labels = None
depends_on = None

# SQLite drops the columns by recreating channel_listings (batch mode),
# reflecting the listings it refers to on the way; their browse index, on an
# expression, cannot be reflected, and the listings are not recreated.
UNREFLECTED = 'Skipped unsupported reflection of expression-based index ix_listings_harvest_sort_date_id'


def upgrade():
    with op.batch_alter_table('channel_listings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('push_sku', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('retired_skus', sa.JSON(), nullable=True))
    # Pushes so far went out under the listing's SKU at the time of sending;
    # its SKU of today is the best account of what a channel holds.
    op.execute(
        "UPDATE channel_listings SET push_sku = "
        "(SELECT listings.sku FROM listings WHERE listings.id = channel_listings.listing_id) "
        "WHERE push_version > 0"
    )


def downgrade():
    with warnings.catch_warnings(), op.batch_alter_table('channel_listings', schema=None) as batch_op:
        warnings.filterwarnings('ignore', UNREFLECTED, sa.exc.SAWarning)
        batch_op.drop_column('retired_skus')
        batch_op.drop_column('push_sku')
