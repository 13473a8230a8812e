"""stations: codes texted to claim an account opened for a villager

Revision ID: e6a2c8f4b1d9
Revises: d8e3f1a7c5b2
Create Date: 2026-11-30 21:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e6a2c8f4b1d9'
down_revision = 'd8e3f1a7c5b2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('claim_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('sent', sa.Integer(), server_default='1', nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_claim_codes_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_claim_codes')),
    sa.UniqueConstraint('user_id', name=op.f('uq_claim_codes_user_id'))
    )


def downgrade():
    op.drop_table('claim_codes')
