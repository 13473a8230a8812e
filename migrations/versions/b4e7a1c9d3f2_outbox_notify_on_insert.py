"""outbox: a NOTIFY on each commit that writes outbox rows (PostgreSQL)

Revision ID: b4e7a1c9d3f2
Revises: e5a9c2d7f3b1
Create Date: 2026-12-01 12:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b4e7a1c9d3f2'
down_revision = 'e5a9c2d7f3b1'
branch_labels = None
depends_on = None

# market.outbox.CHANNEL: the relay process (flask relay) listens on it. One notification
# per statement (an order's rows go in one INSERT), and PostgreSQL folds the
# same notification sent twice in a transaction into one, delivered at commit.


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            "CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_notify('market_outbox', ''); RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
            "FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
        )


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER outbox_notify ON outbox")
        op.execute("DROP FUNCTION outbox_notify()")
