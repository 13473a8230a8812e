"""listings: search text over names, SKU, category, brand, farm and places

Listings gain an English product name, and search tokens: each farm,
category and brand keeps its own, each listing its own and, in search_text,
those of what it is filed under. They are worked out for every row here
(pinyin needs Python), then PostgreSQL indexes both of a listing's token
strings with GIN, read as a tsvector, for prefix queries.

Revision ID: a1c9e4f7b2d8
Revises: c9e4a2f7b1d8
Create Date: 2026-11-30 16:35:00.000000

"""
from alembic import op
import sqlalchemy as sa

from market.catalog.models import backfill_search


# revision identifiers, used by Alembic.
revision = 'a1c9e4f7b2d8'
down_revision = 'c9e4a2f7b1d8'
branch_labels = None
depends_on = None


# The expression the models' indexes and the search queries use, with the
# spaces written in.
def _tsvector(column):
    return sa.text(f"array_to_tsvector(array_remove(string_to_array({column}, ' '), ''))")


def upgrade():
    for table in ('farms', 'categories', 'brands'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('search_tokens', sa.Text(), server_default='', nullable=False))
    with op.batch_alter_table('listings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_en', sa.String(length=120), server_default='', nullable=False))
        batch_op.add_column(sa.Column('search_own', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('search_text', sa.Text(), server_default='', nullable=False))
    # Uses the application's tokenizer: the rows must hold what the code
    # searching them would write.
    backfill_search(op.get_bind())
    if op.get_bind().dialect.name == 'postgresql':
        for column in ('search_own', 'search_text'):
            op.create_index(f'ix_listings_{column}', 'listings', [_tsvector(column)], postgresql_using='gin')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_listings_search_text', table_name='listings')
        op.drop_index('ix_listings_search_own', table_name='listings')
    with op.batch_alter_table('listings', schema=None) as batch_op:
        batch_op.drop_column('search_text')
        batch_op.drop_column('search_own')
        batch_op.drop_column('name_en')
    for table in ('brands', 'categories', 'farms'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('search_tokens')
