"""the impact report's days summed so far are dropped, to be summed again:
per programme, a line the programme granted nothing is no longer counted
in its produce

Revision ID: c5a1e7d3f9b2
Revises: d4a7c2e9f6b1
Create Date: 2026-12-02 12:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c5a1e7d3f9b2'
down_revision = 'd4a7c2e9f6b1'
branch_labels = None
depends_on = None


def upgrade():
    # The sums are a copy of what the lines say; beat sums each closed day
    # again (IMPACT_ROLLUP_INTERVAL_SECONDS), and until then the report
    # reads those days' lines.
    op.execute("DELETE FROM impact_day_figures")
    op.execute("DELETE FROM impact_days")


def downgrade():
    # Summed again under the earlier rule, in the same way.
    op.execute("DELETE FROM impact_day_figures")
    op.execute("DELETE FROM impact_days")
