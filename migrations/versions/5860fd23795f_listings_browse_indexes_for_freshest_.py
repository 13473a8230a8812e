"""listings: browse indexes for freshest harvest first and one farm's listings

"Freshest harvest first" orders by coalesce(harvest_date, '0001-01-01') DESC,
id DESC, which ix_listings_harvest_date_id cannot serve (PostgreSQL read and
sorted the whole table); the expression index replaces it, and also serves
the harvested_after filter, which browse writes on the same expression.

"One farm's listings" walked the primary key backwards filtering on farm_id;
(farm_id, id) replaces the index on farm_id alone, which it makes redundant
(it still serves the foreign key).

Revision ID: 5860fd23795f
Revises: 4a978e8a5923
Create Date: 2026-11-25 22:50:47.530774

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5860fd23795f'
down_revision = '4a978e8a5923'
branch_labels = None
depends_on = None


# The same expression the browse query orders by, with the date written in:
# SQLite cannot reflect this index, and a batch migration that recreates the
# listings table there must create it again.
HARVEST_SORT = [sa.literal_column("coalesce(harvest_date, '0001-01-01') DESC"), sa.literal_column('id DESC')]


def upgrade():
    # New indexes first, so farm_id is never without one.
    if op.get_bind().dialect.name == 'postgresql':
        # Built concurrently: a live listings table keeps taking stock
        # changes while the indexes build.
        with op.get_context().autocommit_block():
            op.create_index('ix_listings_farm_id_id', 'listings', ['farm_id', 'id'], postgresql_concurrently=True)
            op.create_index('ix_listings_harvest_sort_date_id', 'listings', HARVEST_SORT, postgresql_concurrently=True)
            op.drop_index('ix_listings_farm_id', table_name='listings', postgresql_concurrently=True)
            op.drop_index('ix_listings_harvest_date_id', table_name='listings', postgresql_concurrently=True)
        return
    with op.batch_alter_table('listings', schema=None) as batch_op:
        batch_op.create_index('ix_listings_farm_id_id', ['farm_id', 'id'], unique=False)
        batch_op.create_index('ix_listings_harvest_sort_date_id', HARVEST_SORT, unique=False)
        batch_op.drop_index('ix_listings_farm_id')
        batch_op.drop_index('ix_listings_harvest_date_id')


def downgrade():
    with op.batch_alter_table('listings', schema=None) as batch_op:
        batch_op.create_index('ix_listings_harvest_date_id', ['harvest_date', 'id'], unique=False)
        batch_op.create_index('ix_listings_farm_id', ['farm_id'], unique=False)
        batch_op.drop_index('ix_listings_harvest_sort_date_id')
        batch_op.drop_index('ix_listings_farm_id_id')
