"""Farm entries: every movement of a farm's money, once, naming the payout or
reversal that settled it (replaces payout_lines, payout_refund_lines and
payout_premiums)

Revision ID: f5d1c3a8e927
Revises: e3b7a9c2d410
Create Date: 2026-11-30 13:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'f5d1c3a8e927'
down_revision = 'e3b7a9c2d410'
branch_labels = None
depends_on = None

KINDS = ('sale', 'sponsor_premium', 'refund', 'premium_reversal', 'payout', 'transfer_reversal')
COLUMNS = "reference, farm_id, kind, order_id, order_line_id, programme_id, refund_id, grams, produce, commission, premium, net, payout_id, reversal_id"


def _id(column):
    return f"CAST({column} AS VARCHAR(20))"


# What the existing records say, as entries, with the coverage rows that paid them.
BACKFILL = [
    f"""SELECT 'line:' || {_id('cl.order_line_id')} || ':sale', cl.farm_id, 'sale', p.order_id, cl.order_line_id,
        NULL, NULL, cl.grams, cl.amount, cl.commission, cl.premium, cl.amount - cl.commission + cl.premium,
        pl.payout_id, NULL
      FROM captured_lines cl JOIN payments p ON p.id = cl.payment_id
      LEFT JOIN payout_lines pl ON pl.captured_line_id = cl.id
      WHERE p.status = 'captured'""",
    f"""SELECT 'refund_line:' || {_id('rl.id')}, rl.farm_id, 'refund', r.order_id, rl.order_line_id, NULL, r.id,
        -rl.grams, -rl.amount, -rl.commission, -rl.premium, -(rl.amount - rl.commission + rl.premium),
        prl.payout_id, prl.reversal_id
      FROM refund_lines rl JOIN refunds r ON r.id = rl.refund_id
      LEFT JOIN payout_refund_lines prl ON prl.refund_line_id = rl.id
      WHERE r.status = 'succeeded'""",
    # Sponsor premiums and their reversals keep their ledger transaction's reference.
    f"""SELECT t.reference, a.farm_id, CASE t.kind WHEN 'premium' THEN 'sponsor_premium' ELSE 'premium_reversal' END,
        t.order_id, lp.order_line_id, lp.programme_id, NULL, 0, 0, 0, -e.amount, -e.amount, pp.payout_id, NULL
      FROM ledger_transactions t
      JOIN ledger_entries e ON e.transaction_id = t.id
      JOIN ledger_accounts a ON a.id = e.account_id AND a.farm_id IS NOT NULL
      JOIN line_premiums lp ON lp.farm_id = a.farm_id
        AND t.reference LIKE '%premium:' || {_id('lp.id')} || ':programme:' || {_id('lp.programme_id')}
      LEFT JOIN payout_premiums pp ON pp.ledger_transaction_id = t.id AND pp.farm_id = a.farm_id
      WHERE t.kind IN ('premium', 'premium_reversal')""",
    f"""SELECT 'payout:' || {_id('id')}, farm_id, 'payout', NULL, NULL, NULL, NULL, 0, 0, 0, 0, -amount, id, NULL
      FROM payouts""",
    f"""SELECT 'reversal:' || {_id('id')}, farm_id, 'transfer_reversal', NULL, NULL, NULL, NULL, 0, 0, 0, 0, amount,
        NULL, id
      FROM transfer_reversals WHERE status = 'succeeded'""",
]


def _execute(sql):
    """Run literal SQL: its colons are text, not bind parameters."""
    op.execute(sa.text(sql.replace(":", "\\:")))


def upgrade():
    op.create_table('farm_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=120), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum(*KINDS, name='entry_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=True),
    sa.Column('order_line_id', sa.Integer(), nullable=True),
    sa.Column('programme_id', sa.Integer(), nullable=True),
    sa.Column('refund_id', sa.Integer(), nullable=True),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.Column('produce', sa.BigInteger(), nullable=False),
    sa.Column('commission', sa.BigInteger(), nullable=False),
    sa.Column('premium', sa.BigInteger(), nullable=False),
    sa.Column('net', sa.BigInteger(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=True),
    sa.Column('reversal_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("kind IN ('payout', 'transfer_reversal') OR net = produce - commission + premium", name=op.f('ck_farm_entries_net_is_farm_share')),
    sa.CheckConstraint('payout_id IS NULL OR reversal_id IS NULL', name=op.f('ck_farm_entries_settled_once')),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], name=op.f('fk_farm_entries_farm_id_farms')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_farm_entries_order_id_orders')),
    sa.ForeignKeyConstraint(['order_line_id'], ['order_lines.id'], name=op.f('fk_farm_entries_order_line_id_order_lines')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_farm_entries_payout_id_payouts')),
    sa.ForeignKeyConstraint(['programme_id'], ['premium_programmes.id'], name=op.f('fk_farm_entries_programme_id_premium_programmes')),
    sa.ForeignKeyConstraint(['refund_id'], ['refunds.id'], name=op.f('fk_farm_entries_refund_id_refunds')),
    sa.ForeignKeyConstraint(['reversal_id'], ['transfer_reversals.id'], name=op.f('fk_farm_entries_reversal_id_transfer_reversals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_farm_entries')),
    sa.UniqueConstraint('reference', name=op.f('uq_farm_entries_reference'))
    )
    op.create_index(op.f('ix_farm_entries_order_id'), 'farm_entries', ['order_id'], unique=False)
    op.create_index('ix_farm_entries_order_line_id', 'farm_entries', ['order_line_id'], unique=False)
    op.create_index('ix_farm_entries_unsettled', 'farm_entries', ['farm_id', 'kind'], unique=False, postgresql_where=sa.text('payout_id IS NULL'))
    op.create_index('ix_farm_entries_payout_id', 'farm_entries', ['payout_id'], unique=False, postgresql_where=sa.text('payout_id IS NOT NULL'))
    op.create_index('ix_farm_entries_reversal_id', 'farm_entries', ['reversal_id'], unique=False, postgresql_where=sa.text('reversal_id IS NOT NULL'))
    op.create_index('ix_farm_entries_programme_id', 'farm_entries', ['programme_id'], unique=False, postgresql_where=sa.text('programme_id IS NOT NULL'))
    op.create_index('ix_farm_entries_premium_created_at', 'farm_entries', ['created_at'], unique=False, postgresql_where=sa.text("kind IN ('sponsor_premium', 'premium_reversal')"))
    for select in BACKFILL:
        _execute(f"INSERT INTO farm_entries ({COLUMNS}) {select}")
    op.drop_table('payout_premiums')
    op.drop_table('payout_refund_lines')
    op.drop_table('payout_lines')


def downgrade():
    op.create_table('payout_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('captured_line_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['captured_line_id'], ['captured_lines.id'], name=op.f('fk_payout_lines_captured_line_id_captured_lines')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_lines_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_lines')),
    sa.UniqueConstraint('captured_line_id', name=op.f('uq_payout_lines_captured_line_id'))
    )
    op.create_index(op.f('ix_payout_lines_payout_id'), 'payout_lines', ['payout_id'], unique=False)
    op.create_table('payout_refund_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('refund_line_id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=True),
    sa.Column('reversal_id', sa.Integer(), nullable=True),
    sa.Column('farm_amount', sa.BigInteger(), nullable=False),
    sa.Column('adjustment', sa.Boolean(), nullable=False),
    sa.CheckConstraint('(payout_id IS NULL) <> (reversal_id IS NULL)', name=op.f('ck_payout_refund_lines_one_settlement')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_refund_lines_payout_id_payouts')),
    sa.ForeignKeyConstraint(['refund_line_id'], ['refund_lines.id'], name=op.f('fk_payout_refund_lines_refund_line_id_refund_lines')),
    sa.ForeignKeyConstraint(['reversal_id'], ['transfer_reversals.id'], name=op.f('fk_payout_refund_lines_reversal_id_transfer_reversals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_refund_lines')),
    sa.UniqueConstraint('refund_line_id', name=op.f('uq_payout_refund_lines_refund_line_id'))
    )
    op.create_index(op.f('ix_payout_refund_lines_payout_id'), 'payout_refund_lines', ['payout_id'], unique=False)
    op.create_index(op.f('ix_payout_refund_lines_reversal_id'), 'payout_refund_lines', ['reversal_id'], unique=False)
    op.create_table('payout_premiums',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('payout_id', sa.Integer(), nullable=False),
    sa.Column('ledger_transaction_id', sa.Integer(), nullable=False),
    sa.Column('farm_id', sa.Integer(), nullable=False),
    sa.Column('programme', sa.String(length=80), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['farm_id'], ['farms.id'], name=op.f('fk_payout_premiums_farm_id_farms')),
    sa.ForeignKeyConstraint(['ledger_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_payout_premiums_ledger_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payout_premiums_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payout_premiums')),
    sa.UniqueConstraint('ledger_transaction_id', 'farm_id', name=op.f('uq_payout_premiums_ledger_transaction_id_farm_id'))
    )
    op.create_index(op.f('ix_payout_premiums_payout_id'), 'payout_premiums', ['payout_id'], unique=False)
    # The coverage the entries record, back in the tables that recorded it.
    _execute(
        "INSERT INTO payout_lines (payout_id, captured_line_id) SELECT e.payout_id, cl.id FROM farm_entries e "
        "JOIN captured_lines cl ON cl.order_line_id = e.order_line_id WHERE e.kind = 'sale' AND e.payout_id IS NOT NULL"
    )
    _execute(
        "INSERT INTO payout_refund_lines (refund_line_id, payout_id, reversal_id, farm_amount, adjustment) "
        "SELECT rl.id, e.payout_id, e.reversal_id, -e.net, e.reversal_id IS NOT NULL OR COALESCE(("
        "SELECT s.payout_id FROM farm_entries s WHERE s.order_line_id = e.order_line_id AND s.kind = 'sale'), 0) "
        "<> COALESCE(e.payout_id, 0) FROM farm_entries e "
        f"JOIN refund_lines rl ON e.reference = 'refund_line:' || {_id('rl.id')} "
        "WHERE e.kind = 'refund' AND (e.payout_id IS NOT NULL OR e.reversal_id IS NOT NULL)"
    )
    _execute(
        "INSERT INTO payout_premiums (payout_id, ledger_transaction_id, farm_id, programme, amount) "
        f"SELECT e.payout_id, t.id, e.farm_id, 'sponsor_liability:' || {_id('e.programme_id')}, e.net "
        "FROM farm_entries e JOIN ledger_transactions t ON t.reference = e.reference "
        "WHERE e.kind IN ('sponsor_premium', 'premium_reversal') AND e.payout_id IS NOT NULL"
    )
    op.drop_table('farm_entries')
