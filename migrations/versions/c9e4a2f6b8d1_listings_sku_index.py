"""listings: an index on the SKU alone, for a SKU looked up across farms
(`GET /listings?sku=`); the unique key (farm_id, sku) serves it only within
one farm, and PostgreSQL scanned the whole of that index for it

Revision ID: c9e4a2f6b8d1
Revises: b8d3f1a7c5e2
Create Date: 2026-12-02 12:00:00.000000

"""

from alembic import op


# revision identifiers, used by Alembic.
revision = 'c9e4a2f6b8d1'
down_revision = 'b8d3f1a7c5e2'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # Built concurrently: a live listings table keeps taking stock
        # changes while the index builds.
        with op.get_context().autocommit_block():
            op.create_index('ix_listings_sku', 'listings', ['sku'], postgresql_concurrently=True)
        return
    op.create_index('ix_listings_sku', 'listings', ['sku'], unique=False)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            op.drop_index('ix_listings_sku', table_name='listings', postgresql_concurrently=True)
        return
    op.drop_index('ix_listings_sku', table_name='listings')
