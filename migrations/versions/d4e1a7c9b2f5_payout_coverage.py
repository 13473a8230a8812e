"""payout coverage: a payout covers each order part it pays up to the part's
last entry (one narrow row per part) instead of naming itself on each entry;
entries a part gets later still name what settled them

Revision ID: d4e1a7c9b2f5
Revises: d4e7a1c9b5f2
Create Date: 2026-11-30 21:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd4e1a7c9b2f5'
down_revision = 'd4e7a1c9b5f2'
branch_labels = None
depends_on = None

EARNED = "('sale', 'sponsor_premium', 'refund', 'premium_reversal')"


def upgrade():
    op.create_table(
        'payout_coverage',
        sa.Column('order_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('farm_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('payout_id', sa.Integer(), nullable=False),
        sa.Column('last_entry_id', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('order_id', 'farm_id', name=op.f('pk_payout_coverage')),
    )
    with op.batch_alter_table('payout_coverage', schema=None) as batch_op:
        batch_op.create_index('ix_payout_coverage_payout_id', ['payout_id'], unique=False)
    # Each order part whose first entry a payout paid is covered by that
    # payout up to the last entry of the unbroken run of the part's entries
    # it paid (all of them, but for refunds netted later); those entries
    # stop naming it. Entries past that keep naming what settled them.
    op.execute(
        f"""INSERT INTO payout_coverage (order_id, farm_id, payout_id, last_entry_id)
            SELECT f.order_id, f.farm_id, f.payout_id,
                   coalesce(
                       (SELECT min(o.id) - 1 FROM farm_entries o
                        WHERE o.order_id = f.order_id AND o.farm_id = f.farm_id AND o.kind IN {EARNED}
                          AND (o.payout_id IS NULL OR o.payout_id <> f.payout_id)),
                       (SELECT max(o.id) FROM farm_entries o
                        WHERE o.order_id = f.order_id AND o.farm_id = f.farm_id AND o.kind IN {EARNED}))
            FROM farm_entries f
            WHERE f.payout_id IS NOT NULL
              AND f.id IN (SELECT min(id) FROM farm_entries WHERE kind IN {EARNED} AND order_id IS NOT NULL
                           GROUP BY order_id, farm_id)"""
    )
    op.execute(
        f"""UPDATE farm_entries SET payout_id = NULL
            WHERE kind IN {EARNED} AND payout_id IS NOT NULL
              AND EXISTS (SELECT 1 FROM payout_coverage c
                          WHERE c.order_id = farm_entries.order_id AND c.farm_id = farm_entries.farm_id
                            AND farm_entries.id <= c.last_entry_id)"""
    )


def downgrade():
    op.execute(
        f"""UPDATE farm_entries SET payout_id = (
                SELECT c.payout_id FROM payout_coverage c
                WHERE c.order_id = farm_entries.order_id AND c.farm_id = farm_entries.farm_id
                  AND farm_entries.id <= c.last_entry_id)
            WHERE kind IN {EARNED} AND payout_id IS NULL AND reversal_id IS NULL
              AND EXISTS (SELECT 1 FROM payout_coverage c
                          WHERE c.order_id = farm_entries.order_id AND c.farm_id = farm_entries.farm_id
                            AND farm_entries.id <= c.last_entry_id)"""
    )
    with op.batch_alter_table('payout_coverage', schema=None) as batch_op:
        batch_op.drop_index('ix_payout_coverage_payout_id')
    op.drop_table('payout_coverage')
