"""Notifications and webhook deliveries say when a worker started sending
them, so they are sent with no row lock held and still by one worker

Revision ID: a9d3f27c5b10
Revises: a7e2c9d4b615
Create Date: 2026-11-30 13:20:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a9d3f27c5b10'
down_revision = 'a7e2c9d4b615'
branch_labels = None
depends_on = None


def upgrade():
    for table in ('notifications', 'webhook_deliveries'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('sending_since', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    for table in ('webhook_deliveries', 'notifications'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('sending_since')
