"""premium programmes: a host's commission on the programme's lines

Revision ID: c3d8e5f1a7b2
Revises: b7f2c9e4a1d6
Create Date: 2026-12-01 08:50:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c3d8e5f1a7b2'
down_revision = 'b7f2c9e4a1d6'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('premium_programmes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('host_commission_bp', sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            'host_commission_bp_in_range', 'host_commission_bp IS NULL OR host_commission_bp BETWEEN 0 AND 10000'
        )


def downgrade():
    with op.batch_alter_table('premium_programmes', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_premium_programmes_host_commission_bp_in_range'), type_='check')
        batch_op.drop_column('host_commission_bp')
