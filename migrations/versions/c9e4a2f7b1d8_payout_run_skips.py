"""Payout runs record each farm they skipped and why

Revision ID: c9e4a2f7b1d8
Revises: a3c9e1f7d2b8
Create Date: 2026-11-30 16:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c9e4a2f7b1d8'
down_revision = 'a3c9e1f7d2b8'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('payout_run_skips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Enum('no_payout_account', 'stripe_transfers_inactive', 'bank_details_missing', 'negative_net', 'nothing_to_pay', name='payout_skip_reason', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('entries_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], name=op.f('fk_payout_run_skips_farm_id_farms')),
    sa.ForeignKeyConstraint(['run_id'], ['payout_runs.id'], name=op.f('fk_payout_run_skips_run_id_payout_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_run_skips')),
    sa.UniqueConstraint('run_id', 'farm_id', name=op.f('uq_payout_run_skips_run_id_farm_id'))
    )
    with op.batch_alter_table('payout_run_skips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payout_run_skips_farm_id'), ['farm_id'], unique=False)


def downgrade():
    with op.batch_alter_table('payout_run_skips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payout_run_skips_farm_id'))
    op.drop_table('payout_run_skips')
