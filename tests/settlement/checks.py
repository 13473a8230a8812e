"""The settlement invariants, each a function returning the violations it
finds as sentences naming the listing, order, farm or programme.

They read the tables the services write (orders, payments, captured and
refund lines, line premiums, the ledger, payouts) and the fake provider's
own records; nothing here calls a service. When settlement moves to other
tables, these are the functions to re-point; the state machine that drives
the services does not change.

Every-step checks: `stock`, `order_money`, `sponsor_budgets`, `kept_premiums`,
`sponsor_accounts`, `farm_earnings`, `seller_commissions`, `ledger`, `routes`, `stripe_transfers`,
`stripe_intents`.
Checks that hold once every pending worker step has run: `after_quiesce`;
and once a payout run has been paid out: `after_payout_run`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from market.commissions.models import CommissionEntry, CommissionKind, Seller, SellerPayout
from market.extensions import db
from market.ledger import service as ledger
from market.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from market.money import line_amount
from market.orders.models import Order, OrderLine, OrderPart, OrderStatus, PartStatus
from market.payments.models import CapturedLine, Payment, PaymentStatus, Provider, Refund, RefundLine, RefundStatus
from market.payments.service import CLOSED, PACKED_OR_LATER
from market.payouts.models import Payout, PayoutTransfer, ReversalStatus, TransferReversal
from market.premiums.models import FundedBy, LinePremium, PremiumProgramme, SponsorDeposit
from market.premiums.service import sponsor_liability
from market.settlement.checks import check_ledger
from market.settlement.models import EARNED, EntryKind, FarmEntry, PayoutCoverage
from market.stations.cashups import DEPOSIT_KIND
from market.stations.models import CashUp
from tests.fakes.stripe_server import FakeStripe

SETTLED = (OrderStatus.DELIVERED, OrderStatus.COLLECTED, OrderStatus.COMPLETED)


@dataclass
class Books:
    """What the test knows independently of the services: each listing's
    stock when the market opened and the lots added since."""

    initial_stock: dict[int, int] = field(default_factory=dict)
    lots_added: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    # What each programme's sponsor paid in, one deposit per bank reference.
    deposited: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    # Cash villagers paid at the station's counter.
    cash_taken: int = 0
    # The station's cash-ups submitted: (expected, counted) by id.
    cash_ups: dict[int, tuple[int, int]] = field(default_factory=dict)
    # Their deposits: (cash-up id, what the bank received) by bank reference.
    station_deposits: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Stripe intents seen recorded on a payment, each checked when first seen.
    intents_seen: set[str] = field(default_factory=set)


# --- helpers ----------------------------------------------------------------


def _held_g(line: OrderLine) -> int:
    """Grams a line keeps out of stock: none once its part was cancelled
    before leaving the farm, the weighed grams once packed, else the
    ordered grams. Produce that left the farm (shipped) stays sold."""
    part = line.part
    if part.status == PartStatus.CANCELLED and part.shipped_at is None:
        return 0
    if part.packed_at is not None:
        return line.weighed_g or 0
    return line.ordered_g


def _line_cancelled(line: OrderLine) -> bool:
    return line.part.status == PartStatus.CANCELLED or line.order.status in CLOSED


def _refunded_lines(payment: Payment, *, statuses: tuple[RefundStatus, ...]) -> dict[int, list[RefundLine]]:
    by_line: dict[int, list[RefundLine]] = defaultdict(list)
    for refund in payment.refunds:
        if refund.status in statuses:
            for refund_line in refund.lines:
                by_line[refund_line.order_line_id].append(refund_line)
    return by_line


def _premium_moves(kind: EntryKind) -> dict[tuple[int, int], int]:
    """Sponsor premiums earned by (SPONSOR_PREMIUM) or taken back from
    (PREMIUM_REVERSAL) the farms, by (order line, programme), as positive
    amounts."""
    rows = db.session.execute(
        select(FarmEntry.order_line_id, FarmEntry.programme_id, func.sum(FarmEntry.net))
        .where(FarmEntry.kind == kind)
        .group_by(FarmEntry.order_line_id, FarmEntry.programme_id)
    ).all()
    return {(line_id, programme_id): abs(int(amount)) for line_id, programme_id, amount in rows}


def _earned_premium(
    premium: LinePremium, earned: dict[tuple[int, int], int], taken_back: dict[tuple[int, int], int]
) -> tuple[int, int]:
    """(paid to the farm, taken back) for one line premium."""
    key = (premium.order_line_id, premium.programme_id)
    return earned.get(key, 0), taken_back.get(key, 0)


def _captured_by_line() -> dict[int, CapturedLine]:
    """The lines whose capture is recorded (a capture decided and still at
    the provider holds its lines' premiums as reserved)."""
    return {
        c.order_line_id: c
        for c in db.session.scalars(select(CapturedLine).join(Payment).where(Payment.status == PaymentStatus.CAPTURED))
    }


def _capturing_lines() -> set[int]:
    """Lines of a capture decided but not yet recorded: cancelling them is a refund to come."""
    return set(
        db.session.scalars(
            select(CapturedLine.order_line_id).join(Payment).where(Payment.status == PaymentStatus.CAPTURING)
        )
    )


# --- 1. stock ----------------------------------------------------------------


def stock(books: Books) -> list[str]:
    """Per listing: initial stock + lots added = current stock + grams the
    order lines hold (see `_held_g`); stock is never negative."""
    from market.catalog.models import Listing  # noqa: PLC0415 (kept beside its one use)

    problems = []
    held: dict[int, int] = defaultdict(int)
    detail: dict[int, list[str]] = defaultdict(list)
    for line in db.session.scalars(select(OrderLine).options(selectinload(OrderLine.part)).order_by(OrderLine.id)):
        grams = _held_g(line)
        held[line.listing_id] += grams
        detail[line.listing_id].append(
            f"order {line.order_id} line {line.id} ({line.part.status}, ordered {line.ordered_g} g, "
            f"weighed {line.weighed_g}) holds {grams} g"
        )
    for listing_id, initial in sorted(books.initial_stock.items()):
        listing = db.session.get(Listing, listing_id)
        assert listing is not None
        added = books.lots_added.get(listing_id, 0)
        if listing.stock_g < 0:
            problems.append(f"listing {listing_id} ({listing.product_name}): stock is negative ({listing.stock_g} g)")
        if initial + added != listing.stock_g + held[listing_id]:
            problems.append(
                f"listing {listing_id} ({listing.product_name}): initial {initial} g + lots {added} g = "
                f"{initial + added} g, but stock {listing.stock_g} g + held by orders {held[listing_id]} g = "
                f"{listing.stock_g + held[listing_id]} g (off by {listing.stock_g + held[listing_id] - initial - added}"
                f" g); " + "; ".join(detail[listing_id])
            )
    return problems


# --- 2. each order's money ---------------------------------------------------


def order_money(fake: FakeStripe) -> list[str]:
    """Per order: never captured more than authorised; what is recorded as
    captured and refunded is what the provider holds; captured - refunded
    (succeeded) = what the captured lines are still worth; a live line's
    capture is what its weighing charged."""
    problems = []
    payments = db.session.scalars(
        select(Payment)
        .options(selectinload(Payment.refunds).selectinload(Refund.lines), selectinload(Payment.captured_lines))
        .order_by(Payment.order_id)
    ).all()
    loaded = {
        order.id: order
        for order in db.session.scalars(select(Order).options(selectinload(Order.lines).selectinload(OrderLine.part)))
    }
    for payment in payments:
        order = loaded[payment.order_id]
        name = f"order {order.id} ({order.status}, payment {payment.status})"
        problems += _provider_problems(name, payment, fake) + _line_problems(name, order, payment)
        problems += _unpaid_problems(name, order, payment)
    return problems


def _unpaid_problems(name: str, order: Order, payment: Payment) -> list[str]:
    """An order not paid yet asks for what its live lines can reach: a part
    cancelled meanwhile lowers its max_total, and what an offline payment
    waits for (an intent already made holds what it was made for). So does
    the new intent a lapsed hold asks for, until it is made."""
    if order.status != OrderStatus.PENDING_PAYMENT:
        renewing = payment.renew_by is not None and payment.status == PaymentStatus.CREATING
        if renewing and payment.amount != order.max_total:
            return [f"{name}: the new intent will ask for {payment.amount}, the order can reach {order.max_total}"]
        return []
    reach = sum(line.max_amount for line in order.lines if not _line_cancelled(line))
    problems = (
        [] if order.max_total == reach else [f"{name}: max_total {order.max_total}, its live lines reach {reach}"]
    )
    waiting = payment.status == PaymentStatus.CREATING or (
        payment.provider == Provider.OFFLINE and payment.status == PaymentStatus.REQUIRES_PAYMENT
    )
    if waiting and payment.amount != order.max_total:
        problems.append(f"{name}: the payment asks for {payment.amount}, the order can reach {order.max_total}")
    return problems


def _provider_problems(name: str, payment: Payment, fake: FakeStripe) -> list[str]:
    problems = []
    if payment.amount_captured > payment.amount:
        problems.append(f"{name}: captured {payment.amount_captured} > authorised {payment.amount}")
    if payment.provider == Provider.STRIPE and payment.stripe_payment_intent_id:
        intent = fake.intents.get(payment.stripe_payment_intent_id)
        received = intent["amount_received"] if intent else 0
        if received != payment.amount_captured:
            problems.append(
                f"{name}: Stripe captured {received} on {payment.stripe_payment_intent_id}, "
                f"our payment records {payment.amount_captured}"
            )
        at_stripe = fake.total_refunded(payment.stripe_payment_intent_id)
        if at_stripe != payment.amount_refunded:
            problems.append(f"{name}: Stripe refunded {at_stripe}, our payment records {payment.amount_refunded}")
    return problems


def _line_problems(name: str, order: Order, payment: Payment) -> list[str]:
    problems = []
    succeeded = sum(r.amount for r in payment.refunds if r.status == RefundStatus.SUCCEEDED)
    if succeeded != payment.amount_refunded:
        problems.append(
            f"{name}: succeeded refunds total {succeeded}, payment.amount_refunded is {payment.amount_refunded}"
        )
    planned = {c.order_line_id: c for c in payment.captured_lines}
    captured_lines = planned if payment.status == PaymentStatus.CAPTURED else {}
    if payment.status == PaymentStatus.CAPTURING:
        decided = sum(c.amount + c.premium for c in planned.values())
        if decided != payment.capture_amount:
            problems.append(f"{name}: the capture decided {payment.capture_amount}, its lines total {decided}")
    recorded = sum(c.amount + c.premium for c in captured_lines.values())
    if recorded != payment.amount_captured:
        problems.append(
            f"{name}: captured lines total {recorded}, payment.amount_captured is {payment.amount_captured}"
        )
    done = _refunded_lines(payment, statuses=(RefundStatus.SUCCEEDED,))
    asked = _refunded_lines(payment, statuses=(RefundStatus.SUCCEEDED, RefundStatus.PENDING))
    worth = 0
    for line in order.lines:
        captured = captured_lines.get(line.id)
        if captured is None:
            if payment.status == PaymentStatus.CAPTURED and not _line_cancelled(line) and line.charged > 0:
                problems.append(f"{name}: line {line.id} is live and charged {line.charged} but was not captured")
            continue
        returned = sum(r.amount + r.premium for r in done.get(line.id, []))
        worth += captured.amount + captured.premium - returned
        asked_g = sum(r.grams for r in asked.get(line.id, []))
        if asked_g > captured.grams or returned > captured.amount + captured.premium:
            problems.append(
                f"{name}: line {line.id} captured {captured.grams} g / {captured.amount + captured.premium}, "
                f"refunds ask {asked_g} g and returned {returned}"
            )
        if not _line_cancelled(line) and (captured.amount, captured.premium) != (line.amount, line.premium_amount):
            problems.append(
                f"{name}: line {line.id} captured {captured.amount}+{captured.premium} but its weighing "
                f"charges {line.amount}+{line.premium_amount}"
            )
    if payment.amount_captured - payment.amount_refunded != worth:
        problems.append(
            f"{name}: captured {payment.amount_captured} - refunded {payment.amount_refunded} = "
            f"{payment.amount_captured - payment.amount_refunded}, but its captured lines are still worth {worth}"
        )
    return problems


# --- 3. sponsor budgets ------------------------------------------------------


def sponsor_budgets() -> list[str]:
    """Per sponsor programme: budget_used = reserved on open (uncaptured,
    live) lines + earned ("premium") - reversed ("premium_reversal");
    0 <= used <= cap; no reservation left on a cancelled or expired line
    that was never captured."""
    problems = []
    captured = _captured_by_line()
    capturing = _capturing_lines()
    earned = _premium_moves(EntryKind.SPONSOR_PREMIUM)
    reversed_ = _premium_moves(EntryKind.PREMIUM_REVERSAL)
    for programme in db.session.scalars(
        select(PremiumProgramme).where(PremiumProgramme.funded_by == FundedBy.SPONSOR).order_by(PremiumProgramme.id)
    ):
        name = f"programme {programme.id} ({programme.name}, cap {programme.budget_cap})"
        reserved = 0
        for premium in db.session.scalars(select(LinePremium).where(LinePremium.programme_id == programme.id)):
            line = db.session.get(OrderLine, premium.order_line_id)
            assert line is not None
            if line.id in captured:
                continue
            if _line_cancelled(line) and line.id not in capturing:
                if premium.amount:
                    problems.append(
                        f"{name}: {premium.amount} still reserved for order {line.order_id} line {line.id}, "
                        f"which was cancelled ({line.order.status}, part {line.part.status}) and never captured"
                    )
            else:
                reserved += premium.amount
        paid = sum(v for (_, programme_id), v in earned.items() if programme_id == programme.id)
        taken = sum(v for (_, programme_id), v in reversed_.items() if programme_id == programme.id)
        if programme.budget_used != reserved + paid - taken:
            problems.append(
                f"{name}: budget_used is {programme.budget_used}, but reserved on open lines {reserved} + "
                f"earned {paid} - reversed {taken} = {reserved + paid - taken}"
            )
        if not 0 <= programme.budget_used <= (programme.budget_cap or 0):
            problems.append(f"{name}: budget_used {programme.budget_used} outside 0..{programme.budget_cap}")
    return problems


def kept_premiums() -> list[str]:
    """Per captured line with a sponsor premium: what the farm keeps (earned
    - reversed) is what the line premium says, and is what the kept grams
    (captured - refunded) earn at the programme's rate, never more than the
    premium at capture. Lines whose reservation fell short of the budget
    are left out (their share is a matter of policy)."""
    problems = []
    captured = _captured_by_line()
    earned, taken_back = _premium_moves(EntryKind.SPONSOR_PREMIUM), _premium_moves(EntryKind.PREMIUM_REVERSAL)
    for premium in db.session.scalars(
        select(LinePremium).where(LinePremium.funded_by == FundedBy.SPONSOR).order_by(LinePremium.id)
    ):
        line_capture = captured.get(premium.order_line_id)
        if line_capture is None:
            continue
        paid, taken = _earned_premium(premium, earned, taken_back)
        name = f"programme {premium.programme_id}: order line {premium.order_line_id} (farm {premium.farm_id})"
        if paid - taken != premium.amount:
            problems.append(
                f"{name}: earned {paid} - reversed {taken} = {paid - taken}, line premium says {premium.amount}"
            )
        if premium.note and premium.note.startswith("Budget short"):
            continue
        refunded_g = db.session.scalar(
            select(func.coalesce(func.sum(RefundLine.grams), 0))
            .join(Refund, Refund.id == RefundLine.refund_id)
            .where(RefundLine.order_line_id == premium.order_line_id, Refund.status == RefundStatus.SUCCEEDED)
        )
        kept_g = line_capture.grams - int(refunded_g or 0)
        expected = min(paid, line_amount(premium.rate_per_kg, kept_g))
        if paid - taken != expected:
            problems.append(
                f"{name}: keeps {paid - taken} of {paid} sponsor premium, but its {kept_g} kept g of "
                f"{line_capture.grams} captured earn {expected} at {premium.rate_per_kg}/kg"
            )
    return problems


def sponsor_accounts(books: Books) -> list[str]:
    """Per sponsor programme: the deposits recorded are those the sponsor
    made (each bank reference once), and its sponsor's account holds what it
    owes: premiums earned - reversed - deposited."""
    problems = []
    earned = _premium_moves(EntryKind.SPONSOR_PREMIUM)
    reversed_ = _premium_moves(EntryKind.PREMIUM_REVERSAL)
    for programme_id in db.session.scalars(
        select(PremiumProgramme.id).where(PremiumProgramme.funded_by == FundedBy.SPONSOR).order_by(PremiumProgramme.id)
    ):
        recorded = int(
            db.session.scalar(
                select(func.coalesce(func.sum(SponsorDeposit.amount), 0)).where(
                    SponsorDeposit.programme_id == programme_id
                )
            )
        )
        if recorded != books.deposited[programme_id]:
            problems.append(
                f"programme {programme_id}: deposits recorded total {recorded}, "
                f"the sponsor paid in {books.deposited[programme_id]}"
            )
        paid = sum(v for (_, p), v in earned.items() if p == programme_id)
        taken = sum(v for (_, p), v in reversed_.items() if p == programme_id)
        owed = paid - taken - books.deposited[programme_id]
        booked = ledger.balance(sponsor_liability(programme_id))
        if booked != owed:
            problems.append(
                f"programme {programme_id}: the sponsor's account holds {booked}, but earned {paid} - reversed "
                f"{taken} - deposited {books.deposited[programme_id]} = {owed}"
            )
    return problems


# --- 4. each farm's money ----------------------------------------------------


def farm_earnings() -> list[str]:
    """Per farm: earned (captured farm share - refunded farm share + sponsor
    premiums kept on captured lines) = paid out - transfer reversals +
    payable (-balance of farm_payable:<id>); no line is sold to its farm
    twice (`entries_paid_once`: none is paid twice)."""
    problems = []
    captured = _captured_by_line()
    farm_ids = set(db.session.scalars(select(OrderLine.farm_id).distinct())) | set(
        db.session.scalars(select(Payout.farm_id).distinct())
    )
    for farm_id in sorted(farm_ids):
        share = sum(c.amount - c.commission + c.premium for c in captured.values() if c.farm_id == farm_id)
        refunded = sum(
            r.amount - r.commission + r.premium
            for r in db.session.scalars(
                select(RefundLine)
                .join(Refund, Refund.id == RefundLine.refund_id)
                .where(RefundLine.farm_id == farm_id, Refund.status == RefundStatus.SUCCEEDED)
            )
        )
        premiums = sum(
            p.amount
            for p in db.session.scalars(
                select(LinePremium).where(LinePremium.farm_id == farm_id, LinePremium.funded_by == FundedBy.SPONSOR)
            )
            if p.order_line_id in captured
        )
        earned = share - refunded + premiums
        paid = int(
            db.session.scalar(select(func.coalesce(func.sum(Payout.amount), 0)).where(Payout.farm_id == farm_id))
        )
        reversed_ = int(
            db.session.scalar(
                select(func.coalesce(func.sum(TransferReversal.amount), 0)).where(
                    TransferReversal.farm_id == farm_id, TransferReversal.status == ReversalStatus.SUCCEEDED
                )
            )
        )
        payable = -ledger.balance(ledger.farm_payable(farm_id))
        if earned != paid - reversed_ + payable:
            problems.append(
                f"farm {farm_id}: earned {earned} (captured share {share} - refunded {refunded} + sponsor premiums "
                f"{premiums}) but paid out {paid} - reversed {reversed_} + payable {payable} = "
                f"{paid - reversed_ + payable}"
            )
    for line_id, count in db.session.execute(
        select(FarmEntry.order_line_id, func.count())
        .where(FarmEntry.kind == EntryKind.SALE)
        .group_by(FarmEntry.order_line_id)
        .having(func.count() > 1)
    ):
        problems.append(f"order line {line_id} is sold to its farm {count} times")
    return problems


# --- 4b. station cash -----------------------------------------------------------


def station_cash(books: Books, point_id: int) -> list[str]:
    """Every fen villagers paid at the station `point_id` is accounted for: the cash
    payments recorded are what was taken, the cash-ups and deposits recorded
    are those made (each bank reference once), each cash-up expected what
    its payments took, the station's account holds the cash taken, corrected
    by what its counts found, less the counted cash deposited, the bank's
    account got what the bank received, and the differences account holds
    what counts and the bank found missing."""
    problems = []
    taken = int(
        db.session.scalar(
            select(func.coalesce(func.sum(Payment.amount), 0)).where(Payment.cash_received_at.isnot(None))
        )
    )
    if taken != books.cash_taken:
        problems.append(f"cash payments recorded total {taken}, villagers paid {books.cash_taken}")
    recorded = {
        row.id: (row.expected, row.counted)
        for row in db.session.execute(select(CashUp.id, CashUp.expected, CashUp.counted))
    }
    if recorded != books.cash_ups:
        problems.append(f"cash-ups recorded {recorded}, staff submitted {books.cash_ups}")
    deposits = {
        row.bank_reference: (row.id, row.deposited)
        for row in db.session.execute(
            select(CashUp.id, CashUp.bank_reference, CashUp.deposited).where(CashUp.bank_reference.isnot(None))
        )
    }
    if deposits != books.station_deposits:
        problems.append(f"station deposits recorded {deposits}, operators confirmed {books.station_deposits}")
    counted_in = {
        cash_up_id: int(amount)
        for cash_up_id, amount in db.session.execute(
            select(Payment.cash_up_id, func.sum(Payment.amount))
            .where(Payment.cash_up_id.isnot(None))
            .group_by(Payment.cash_up_id)
        ).tuples()
    }
    for cash_up_id, (expected, _) in sorted(books.cash_ups.items()):
        if counted_in.get(cash_up_id, 0) != expected:
            problems.append(f"cash-up {cash_up_id} expected {expected}, its payments took {counted_in.get(cash_up_id)}")
    found = sum(counted - expected for expected, counted in books.cash_ups.values())
    paid_in = sum(books.cash_ups[cash_up_id][1] for cash_up_id, _ in books.station_deposits.values())
    received = sum(amount for _, amount in books.station_deposits.values())
    holds = ledger.balance(ledger.station_cash(point_id))
    if holds != books.cash_taken + found - paid_in:
        problems.append(
            f"the station holds {holds}, but villagers paid {books.cash_taken}, counts found {found} more "
            f"and {paid_in} of the count was deposited"
        )
    in_bank = int(
        db.session.scalar(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0))
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(LedgerAccount.code == ledger.gateway_cash(Provider.OFFLINE), LedgerTransaction.kind == DEPOSIT_KIND)
        )
    )
    if in_bank != received:
        problems.append(f"the bank's account got {in_bank} from station deposits, the bank received {received}")
    missing = ledger.balance(ledger.STATION_CASH_DIFFERENCE)
    if missing != -found + paid_in - received:
        problems.append(
            f"{ledger.STATION_CASH_DIFFERENCE} holds {missing}, but counts found {found} more and the bank "
            f"{received - paid_in} more than counted"
        )
    return problems


def entries_paid_once() -> list[str]:
    """Each earned entry is paid at most once across all runs, and each
    payout is exactly what it paid, worked out here row by row rather than
    by `ledger-check`'s queries: an entry is paid by the payout covering its
    order part up to or past it, by the payout its row names, or by the
    reversal its row names; never by two of them. A part is covered at most
    once, and only by a payout of its farm."""
    problems = []
    coverage = {(c.order_id, c.farm_id): c for c in db.session.scalars(select(PayoutCoverage))}
    payouts = {p.id: p for p in db.session.scalars(select(Payout))}
    for (order_id, farm_id), covered in coverage.items():
        payout = payouts.get(covered.payout_id)
        if payout is None or payout.farm_id != farm_id:
            problems.append(f"order {order_id}, farm {farm_id}: covered by payout {covered.payout_id} of another farm")
    paid: dict[int, int] = {}
    for entry in db.session.scalars(select(FarmEntry).where(FarmEntry.kind.in_(EARNED)).order_by(FarmEntry.id)):
        part = coverage.get((entry.order_id, entry.farm_id)) if entry.order_id is not None else None
        settlers = [
            *([f"payout {part.payout_id} (its part's coverage)"] if part and entry.id <= part.last_entry_id else []),
            *([f"payout {entry.payout_id}"] if entry.payout_id is not None else []),
            *([f"reversal {entry.reversal_id}"] if entry.reversal_id is not None else []),
        ]
        if len(settlers) > 1:
            problems.append(f"{entry.kind} entry {entry.id} is paid {len(settlers)} times: {', '.join(settlers)}")
        payer = part.payout_id if part and entry.id <= part.last_entry_id else entry.payout_id
        if payer is not None:
            paid[payer] = paid.get(payer, 0) + entry.net
    for payout_id, payout in sorted(payouts.items()):
        if paid.get(payout_id, 0) != payout.amount:
            problems.append(f"payout {payout_id} of {payout.amount} paid entries worth {paid.get(payout_id, 0)}")
    return problems


# --- 4d. sellers' commissions ------------------------------------------------------


def _line_shares(kept: dict[int, dict[int, int]]) -> list[str]:
    """Per line the sellers earned on: (what each seller keeps, by seller)
    against its capture and its succeeded refunds."""
    problems = []
    captured = _captured_by_line()
    refunded: dict[int, list[RefundLine]] = defaultdict(list)
    for line in db.session.scalars(
        select(RefundLine)
        .join(Refund, Refund.id == RefundLine.refund_id)
        .where(Refund.status == RefundStatus.SUCCEEDED)
    ):
        refunded[line.order_line_id].append(line)
    for line_id, by_seller in sorted(kept.items()):
        line = captured.get(line_id)
        if line is None:
            problems.append(f"order line {line_id}: sellers have entries but its capture is not recorded")
            continue
        backs = refunded[line_id]
        platform = line.commission - sum(r.commission for r in backs)
        for seller_id, amount in sorted(by_seller.items()):
            if amount < 0:
                problems.append(f"order line {line_id}: seller {seller_id} gave back {-amount} more than it earned")
        if sum(by_seller.values()) > platform:
            problems.append(
                f"order line {line_id}: sellers keep {sum(by_seller.values())} of a commission of which the "
                f"platform keeps {platform}"
            )
        if sum(r.grams for r in backs) == line.grams and any(by_seller.values()):
            problems.append(f"order line {line_id} is wholly refunded but sellers keep {dict(by_seller)}")
    return problems


def seller_commissions() -> list[str]:
    """Worked out line by line: what the sellers keep of a captured line
    (earned less reversed) is never negative and never more than what the
    platform keeps of its commission on it (captured less refunded), and is
    nothing once the line is wholly refunded; a seller earns only on lines
    of orders it sells (the host on orders placed with its code, the
    station on orders collected there) and only once the capture is
    recorded. Per seller: earned - reversed = paid + payable, each payout
    exactly the entries it names."""
    problems = []
    sellers = {seller.id: seller for seller in db.session.scalars(select(Seller))}
    orders = {order.id: order for order in db.session.scalars(select(Order))}
    kept: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    net: dict[int, int] = defaultdict(int)
    paid_by: dict[int, int] = defaultdict(int)
    for entry in db.session.scalars(select(CommissionEntry).order_by(CommissionEntry.id)):
        if entry.kind == CommissionKind.PAYOUT:
            continue
        net[entry.seller_id] += entry.amount
        if entry.payout_id is not None:
            paid_by[entry.payout_id] += entry.amount
        assert entry.order_line_id is not None and entry.order_id is not None
        kept[entry.order_line_id][entry.seller_id] += entry.amount
        seller, order = sellers[entry.seller_id], orders[entry.order_id]
        sells = order.host_id == seller.id if seller.code else order.fulfilment_point_id == seller.fulfilment_point_id
        if not sells:
            problems.append(f"seller {seller.id} has a {entry.kind} entry on order {order.id}, which it does not sell")
    problems += _line_shares(kept)
    payouts = list(db.session.scalars(select(SellerPayout)))
    for payout in payouts:
        if paid_by[payout.id] != payout.amount:
            problems.append(f"seller payout {payout.id} of {payout.amount} paid entries worth {paid_by[payout.id]}")
    for seller_id in sorted(sellers):
        paid = sum(p.amount for p in payouts if p.seller_id == seller_id)
        payable = -ledger.balance(ledger.seller_payable(seller_id))
        if net[seller_id] != paid + payable:
            problems.append(
                f"seller {seller_id}: earned less reversed {net[seller_id]} but paid {paid} + payable {payable}"
            )
    return problems


# --- 5. the ledger -------------------------------------------------------------


def ledger_balances() -> list[str]:
    """The ledger balances and `ledger-check` finds nothing."""
    problems = list(check_ledger())
    total = db.session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount), 0)))
    if total:
        problems.append(f"the ledger's entries sum to {total}, not 0")
    return problems


# --- 5b. Routes ---------------------------------------------------------------


def routes() -> list[str]:
    """Each shipped pickup part has its route, ending at the order's point,
    scanned in order: received at a point only once dispatched from the one
    before, dispatched only once received, never dispatched from its last;
    it has arrived exactly when its last point received it. A part not
    shipped, or delivered to an address, has no route. An order ready for
    pickup (its last part arrived, or the last not arrived cancelled) has
    its pickup code, and, paid on collection, its deadline to be collected."""
    problems = []
    ready = db.session.scalars(select(Order).where(Order.status == OrderStatus.READY_FOR_PICKUP)).all()
    for order in ready:
        if order.pickup_code is None or (order.paid_at is None and order.expires_at is None):
            problems.append(
                f"order {order.id} is ready for pickup with code {order.pickup_code} and deadline {order.expires_at}"
            )
    parts = db.session.scalars(
        select(OrderPart).options(selectinload(OrderPart.hops), selectinload(OrderPart.order))
    ).all()
    for part in parts:
        name, hops = f"part {part.id} of order {part.order_id}", part.hops
        if part.shipped_at is None or part.order.fulfilment_point_id is None:
            if hops:
                problems.append(f"{name} has a route, shipped at {part.shipped_at} to {part.order.fulfilment}")
            continue
        if not hops or hops[-1].point_id != part.order.fulfilment_point_id:
            problems.append(f"{name} is shipped to point {part.order.fulfilment_point_id} on route {hops}")
            continue
        if [hop.sequence for hop in hops] != list(range(1, len(hops) + 1)):
            problems.append(f"{name} has hops numbered {[hop.sequence for hop in hops]}")
        for before, hop in zip([None, *hops], hops, strict=False):
            if hop.received_at is not None and before is not None and before.dispatched_at is None:
                problems.append(f"{name} was received at point {hop.point_id} before leaving {before.point_id}")
            if hop.dispatched_at is not None and (hop.received_at is None or hop is hops[-1]):
                problems.append(f"{name} was dispatched from point {hop.point_id} without being received there")
        if part.status != PartStatus.CANCELLED and (part.status == PartStatus.ARRIVED) != (
            hops[-1].received_at is not None
        ):
            problems.append(f"{name} is {part.status}, its last point received it at {hops[-1].received_at}")
    return problems


# --- 6. Stripe transfers -------------------------------------------------------


def stripe_transfers(fake: FakeStripe) -> list[str]:
    """Each payout transfer recorded as made is at Stripe as planned: its
    amount, to the farm's account, drawn on its order's charge (the charge
    the capture made) or on none; and no charge is drawn on beyond its amount."""
    problems = []
    for payout_transfer in db.session.scalars(
        select(PayoutTransfer).where(PayoutTransfer.stripe_transfer_id.isnot(None)).order_by(PayoutTransfer.id)
    ):
        name = f"payout {payout_transfer.payout_id} transfer {payout_transfer.id} (order {payout_transfer.order_id})"
        made = fake.transfers.get(payout_transfer.stripe_transfer_id or "")
        if made is None:
            problems.append(f"{name}: Stripe has no transfer {payout_transfer.stripe_transfer_id}")
            continue
        planned = (payout_transfer.amount, payout_transfer.payout.stripe_account_id, payout_transfer.stripe_charge_id)
        at_stripe = (made["amount"], made["destination"], made.get("source_transaction"))
        if planned != at_stripe:
            problems.append(f"{name}: recorded (amount, account, charge) {planned}, Stripe made {at_stripe}")
    for payment in db.session.scalars(
        select(Payment).where(Payment.stripe_charge_id.isnot(None)).order_by(Payment.order_id)
    ):
        intent = fake.intents.get(payment.stripe_payment_intent_id or "") or {}
        if intent.get("latest_charge") != payment.stripe_charge_id:
            problems.append(
                f"order {payment.order_id}: records charge {payment.stripe_charge_id}, "
                f"Stripe's intent made {intent.get('latest_charge')}"
            )
    for charge_id, charge in fake.charges.items():
        if fake.drawn_on(charge_id) > charge["amount"]:
            problems.append(f"charge {charge_id} of {charge['amount']}: transfers drew {fake.drawn_on(charge_id)}")
    return problems


def stripe_intents(fake: FakeStripe, books: Books) -> list[str]:
    """Every PaymentIntent at Stripe. The one a payment records is of the
    payment's order and holds what the payment says it does; recorded for
    an order not paid yet (or anew after a lapsed hold), it holds what the
    order can reach when it is first seen (a part cancelled while the
    answer to its request was lost is not held). Any other (made under a request whose answer was lost and
    whose key was given up, or replaced after its hold lapsed) holds no
    money and took none: nothing is held or captured at Stripe that the
    market does not record."""
    problems = []
    with fake.lock:
        intents = {intent_id: dict(intent) for intent_id, intent in fake.intents.items()}
    recorded: set[str] = set()
    for payment in db.session.scalars(
        select(Payment).where(Payment.stripe_payment_intent_id.isnot(None)).order_by(Payment.order_id)
    ):
        intent_id = payment.stripe_payment_intent_id or ""
        recorded.add(intent_id)
        order = db.session.get(Order, payment.order_id)
        assert order is not None
        name = f"order {order.id} ({order.status}, payment {payment.status})"
        intent = intents.get(intent_id)
        if intent is None:
            problems.append(f"{name}: records intent {intent_id}, which Stripe never made")
            continue
        if intent["metadata"].get("order_id") != str(order.id) or intent["amount"] != payment.amount:
            problems.append(
                f"{name}: records intent {intent_id} for {payment.amount}; Stripe made it for "
                f"{intent['amount']}, for order {intent['metadata'].get('order_id')}"
            )
        if intent_id not in books.intents_seen:
            books.intents_seen.add(intent_id)
            unpaid = order.status == OrderStatus.PENDING_PAYMENT or payment.renew_by is not None
            if unpaid and intent["amount"] != order.max_total:
                problems.append(
                    f"{name}: its new intent {intent_id} holds {intent['amount']}, "
                    f"but the order can reach {order.max_total}"
                )
    for intent_id, intent in intents.items():
        if intent_id in recorded:
            continue
        if intent["status"] == "requires_capture" or intent["amount_capturable"] or intent["amount_received"]:
            problems.append(
                f"intent {intent_id} of order {intent['metadata'].get('order_id')}, which no payment records, "
                f"is {intent['status']}: holding {intent['amount_capturable']}, took {intent['amount_received']}"
            )
    return problems


# --- once the workers are done -----------------------------------------------


def after_quiesce(fake: FakeStripe) -> list[str]:
    """Once every pending worker step has run: a closed order keeps no money
    (an authorisation released, a capture fully refunded) unless an operator
    was told; a cancelled part's captured lines are fully refunded; no
    refund is left pending; a packed order is captured or flagged; no open
    order's card hold lapsed unseen, and none waits past its deadline to
    pay again; no open order's card payment is still being opened (its
    request to Stripe retried until answered)."""
    problems = []
    for payment in db.session.scalars(select(Payment).order_by(Payment.order_id)):
        order = db.session.get(Order, payment.order_id)
        assert order is not None
        name = f"order {order.id} ({order.status}, payment {payment.status})"
        pending = [r.id for r in payment.refunds if r.status == RefundStatus.PENDING]
        if pending:
            problems.append(f"{name}: refunds {pending} still pending after every worker step ran")
        flagged = payment.attention is not None
        intent = fake.intents.get(payment.stripe_payment_intent_id or "")
        if order.status in CLOSED:
            if payment.status in (PaymentStatus.AUTHORISED,) and not flagged:
                problems.append(f"{name}: the order is closed but its payment is still authorised, and nobody is told")
            if intent is not None and intent["status"] == "requires_capture" and not flagged:
                problems.append(f"{name}: the order is closed but Stripe still holds {intent['amount_capturable']}")
            kept = payment.amount_captured - payment.amount_refunded
            if kept and not flagged:
                failed = [f"{r.id} ({r.failure_reason})" for r in payment.refunds if r.status == RefundStatus.FAILED]
                problems.append(
                    f"{name}: the order is closed but keeps {kept} of {payment.amount_captured} captured "
                    f"(refunded {payment.amount_refunded}; failed refunds: {failed or 'none'}), and nobody is told"
                )
        elif payment.status == PaymentStatus.AUTHORISED and intent is not None and intent["status"] == "canceled":
            problems.append(f"{name}: its card hold lapsed at Stripe unseen, and nobody is told")
        elif payment.status == PaymentStatus.CREATING or payment.renew_by is not None:
            # Every task to open it ran, and every deadline has passed: paid
            # anew (which clears renew_by) or cancelled.
            problems.append(
                f"{name}: still being opened after every worker step ran, so the buyer cannot pay it"
                if payment.renew_by is None
                else f"{name}: still open past its deadline to pay again ({payment.renew_by:%Y-%m-%d %H:%M})"
            )
        elif payment.status == PaymentStatus.CAPTURED:
            done = _refunded_lines(payment, statuses=(RefundStatus.SUCCEEDED,))
            for captured in payment.captured_lines:
                line = db.session.get(OrderLine, captured.order_line_id)
                assert line is not None
                returned = sum(r.amount + r.premium for r in done.get(line.id, []))
                kept = captured.amount + captured.premium - returned
                if line.part.status == PartStatus.CANCELLED and kept and not flagged:
                    problems.append(
                        f"{name}: line {line.id} of cancelled part {line.part_id} keeps {kept} captured, "
                        "and nobody is told"
                    )
        # An order paid in cash on collection waits at its station for the
        # villager (until it expires), uncaptured: the cash is the capture.
        waits_for_cash = payment.cash_point_id is not None and payment.status == PaymentStatus.REQUIRES_PAYMENT
        if (
            order.status in PACKED_OR_LATER
            and order.total
            and payment.status != PaymentStatus.CAPTURED
            and not flagged
            and not waits_for_cash
        ):
            problems.append(f"{name}: the order is packed but its payment was never captured, and nobody is told")
    return problems


def _due_left(farm_id: int) -> int:
    """What the farm's payable holds beyond the money of orders still on
    their way (neither settled nor closed): what a payout run should have
    paid (positive) or netted (negative)."""
    account = ledger.farm_payable(farm_id)
    in_flight = db.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .join(Order, Order.id == LedgerTransaction.order_id)
        .where(LedgerAccount.code == account, Order.status.not_in([*SETTLED, *CLOSED]))
    )
    return -ledger.balance(account) + int(in_flight or 0)


def after_payout_run(run_id: int, ready_farms: list[int]) -> list[str]:
    """After a payout run and its transfers and reversals: a farm the run
    paid has nothing due left (every refund and premium reversal of its
    settled or closed orders netted); a farm it did not pay is owed nothing."""
    problems = []
    for farm_id in ready_farms:
        left = _due_left(farm_id)
        paid = db.session.scalar(select(Payout.amount).where(Payout.run_id == run_id, Payout.farm_id == farm_id))
        if paid is not None and left != 0:
            problems.append(
                f"farm {farm_id}: payout run {run_id} paid it {paid} but left {left} due on settled or closed "
                f"orders ({'owed to it' if left > 0 else 'owed by it, never netted'})"
            )
        elif paid is None and left > 0:
            problems.append(f"farm {farm_id}: payout run {run_id} paid nothing, but {left} is due to it")
    return problems
