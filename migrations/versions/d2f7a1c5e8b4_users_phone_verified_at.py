"""users record when their phone number was proven theirs: only a proven
number is matched to a villager for an order or a claim (anyone may type
any number into their profile)

Proven now: the accounts stations opened for villagers (no email and no
password: staff typed the number the villager gave them in person), and
the accounts claimed from them. A claim leaves no mark on the account
itself (it takes an email, a password and `confirmed_at`, as any
registration does), but only an account without an email is texted a
claim code and only a claim gives such an account an email: so an account
with an email that was texted an `account.claim_code` to the number it
holds now was claimed with it. An account whose claim code notifications
are gone, or that changed its number since, cannot be told from a
registered one and is left unproven, the safe side: an order for its
number then opens a new villager account rather than reach an account
that may not be the villager's.

Revision ID: d2f7a1c5e8b4
Revises: c6a4e2b9d7f3
Create Date: 2026-12-02 13:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'd2f7a1c5e8b4'
down_revision = 'c6a4e2b9d7f3'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_verified_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE users SET phone_verified_at = created_at "
        "WHERE phone IS NOT NULL AND email IS NULL AND password_hash IS NULL"
    )
    op.execute(
        "UPDATE users SET phone_verified_at = COALESCE(confirmed_at, created_at) "
        "WHERE phone IS NOT NULL AND email IS NOT NULL AND EXISTS (SELECT 1 FROM notifications "
        "WHERE notifications.user_id = users.id AND notifications.event = 'account.claim_code' "
        "AND notifications.recipient = users.phone)"
    )


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('phone_verified_at')
