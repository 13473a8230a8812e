"""sponsor deposits: what each sponsor paid towards its programme's premiums

Revision ID: b7d2e5a9c4f1
Revises: a1c9e4f7b2d8
Create Date: 2026-11-30 18:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7d2e5a9c4f1'
down_revision = 'a1c9e4f7b2d8'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sponsor_deposits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('bank_reference', sa.String(length=255), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_sponsor_deposits_amount_positive')),
    sa.ForeignKeyConstraint(['programme_id'], ['premium_programmes.id'], name=op.f('fk_sponsor_deposits_programme_id_premium_programmes')),
    sa.ForeignKeyConstraint(['recorded_by'], ['users.id'], name=op.f('fk_sponsor_deposits_recorded_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sponsor_deposits')),
    sa.UniqueConstraint('programme_id', 'bank_reference', name=op.f('uq_sponsor_deposits_programme_id_bank_reference'))
    )
    with op.batch_alter_table('sponsor_deposits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sponsor_deposits_programme_id'), ['programme_id'], unique=False)


def downgrade():
    with op.batch_alter_table('sponsor_deposits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sponsor_deposits_programme_id'))
    op.drop_table('sponsor_deposits')
