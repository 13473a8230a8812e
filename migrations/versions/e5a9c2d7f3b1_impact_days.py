"""reports: the impact report's closed days, summed once

Revision ID: e5a9c2d7f3b1
Revises: c3d8e5f1a7b2
Create Date: 2026-12-01 09:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e5a9c2d7f3b1'
down_revision = 'c3d8e5f1a7b2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('impact_days',
    sa.Column('business_day', sa.Date(), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('rolled_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('business_day', name=op.f('pk_impact_days'))
    )
    op.create_table('impact_day_figures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('business_day', sa.Date(), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('group_by', sa.String(length=16), nullable=False),
    sa.Column('county_key', sa.String(length=200), nullable=True),
    sa.Column('programme_id', sa.Integer(), nullable=True),
    sa.Column('grams_sold', sa.BigInteger(), nullable=False),
    sa.Column('sales', sa.BigInteger(), nullable=False),
    sa.Column('premiums_paid', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("(group_by = 'county' AND county_key IS NOT NULL AND programme_id IS NULL) OR (group_by = 'programme' AND programme_id IS NOT NULL AND county_key IS NULL)", name=op.f('ck_impact_day_figures_one_key')),
    sa.ForeignKeyConstraint(['business_day'], ['impact_days.business_day'], name=op.f('fk_impact_day_figures_business_day_impact_days'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_impact_day_figures'))
    )
    with op.batch_alter_table('impact_day_figures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_impact_day_figures_business_day'), ['business_day'], unique=False)
        batch_op.create_index('ix_impact_day_figures_group_by_since', ['group_by', 'since'], unique=False)


def downgrade():
    with op.batch_alter_table('impact_day_figures', schema=None) as batch_op:
        batch_op.drop_index('ix_impact_day_figures_group_by_since')
        batch_op.drop_index(batch_op.f('ix_impact_day_figures_business_day'))
    op.drop_table('impact_day_figures')
    op.drop_table('impact_days')
