"""The console's pages. Like the API's routes they only read the request,
call market services and render: every figure and every change comes from
the same service function the API uses."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma
from flask import current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from market.accounts import service as accounts
from market.accounts.models import Role
from market.api import MAX_ID, csv_response
from market.catalog import service as catalog
from market.catalog.models import FarmStatus, FulfilmentPoint, FulfilmentPointKind
from market.catalog.schemas import FulfilmentPointCreateSchema, FulfilmentPointUpdateSchema
from market.commissions import service as commissions
from market.commissions.models import SellerKind, SellerPayoutStatus
from market.commissions.schemas import SellerCreateSchema, SellerUpdateSchema
from market.console import BASIS_POINTS_EXPONENT, blp
from market.console.i18n import translate
from market.console.sellers import payouts_awaiting, seller_names
from market.console.session import end, operator, operator_required, start
from market.db import business_day_range, business_today, utcnow
from market.errors import Conflict, DomainError, Invalid, NotFound, Unauthenticated, field_errors
from market.extensions import limiter
from market.inventory import service as inventory
from market.money import format_minor, minor_unit_exponent
from market.notifications import service as notifications
from market.orders import service as orders
from market.orders.models import OPEN_STATUSES, OrderStatus
from market.payments import service as payments
from market.payments.schemas import RefundRequestSchema
from market.payments.service import LineRefund
from market.payouts import service as payouts
from market.payouts.models import PayoutStatus
from market.payouts.schemas import ConfirmSchema, FlagSchema
from market.premiums import service as premiums
from market.reconciliation import service as reconciliation
from market.reconciliation.models import Outcome
from market.reconciliation.schemas import ResolveSchema
from market.reports import service as reports
from market.stations import cashups
from market.stations.schemas import DepositConfirmSchema

# The states the Today page counts, in the order an order goes through them.
# The open orders someone still has to move on (collected and delivered
# ones only wait to complete), in the order an order goes through them.
OPEN_STATES = tuple(
    state
    for state in OrderStatus
    if state in OPEN_STATUSES and state not in (OrderStatus.COLLECTED, OrderStatus.DELIVERED)
)
PROGRAMMES_SHOWN = 100
CENTRES_SHOWN = 1000  # county centres a station form suggests as its parent; any other is typed by id
STATIONS_SHOWN = 1000  # village stations the seller form suggests; any other is typed by id
# The seller form's fields taken as typed (the rate, the station and the host are converted).
SELLER_TEXTS = ("kind", "name", "code", "account_holder", "bank_name", "account_number")
# The impact page shows this many weeks unless asked for a period, and
# draws at most IMPACT_CHART_WEEKS of a longer one week by week.
IMPACT_WEEKS = 12
IMPACT_CHART_WEEKS = 26
PAGE_SIZE = 50
MAX_DIGITS = 18  # a number of at most this many digits fits a BIGINT
TEXT_FILTER_LENGTH = 120  # as the API's `buyer` and `farm` filters
CSV_PAGE_SIZE = 100  # list_orders' largest page


def _local_path(target: str | None) -> str | None:
    """`target` if it is a console path of this site (never another host)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console/") or "\\" in target:
        return None
    return target


@blp.route("/sign-in", methods=["GET"])
def sign_in() -> str:
    return render_template("console/sign_in.html", next=_local_path(request.args.get("next")))


@blp.route("/sign-in", methods=["POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"])
def sign_in_post() -> Response | tuple[str, int]:
    email = request.form.get("email", "")
    try:
        user = accounts.sign_in(email=email, password=request.form.get("password", ""))
    except Unauthenticated as refused:
        page = render_template("console/sign_in.html", error=refused.detail, email=email, next=request.form.get("next"))
        return page, 401
    g.console_language = user.language.value
    if Role.OPERATOR not in user.role_names:
        end()
        return render_template("console/sign_in.html", error=None, refused=True, email=email), 403
    start(user)
    return redirect(_local_path(request.form.get("next")) or url_for("console.today"))


@blp.route("/sign-out", methods=["POST"])
def sign_out() -> str:
    end()
    return render_template("console/sign_in.html", signed_out=True)


def _week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


@blp.route("/", methods=["GET"])
@operator_required
def today() -> str:
    actor = operator()
    day = business_today()
    week_from = _week_start(day)
    sales = {
        key: (first, day, reports.impact_totals(actor, periods=[(first, day)], group_by="county")[0])
        for key, first in (("today", day), ("this_week", week_from))
    }
    programmes = premiums.list_programmes(actor, limit=PROGRAMMES_SHOWN, active=True).items
    seller_payouts_awaiting, seller_payouts_run = payouts_awaiting(actor)
    return render_template(
        "console/today.html",
        day=day,
        states=orders.count_orders_by_status(actor, OPEN_STATES),
        sales=sales,
        overdue_for_pickup=orders.count_orders(actor, overdue_for_pickup=True),
        payments_attention=payments.count_attention(actor),
        holds_lapsing=payments.count_holds_lapsing(actor),
        failed_deliveries=notifications.count_failed_deliveries(actor),
        channels_in_error=inventory.count_channels(actor, in_error=True),
        payouts_attention=payouts.count_needing_attention(actor),
        mismatches=reconciliation.count_unresolved(actor),
        cash_ups_flagged=cashups.count_cash_ups(actor, flagged=True),
        cash_ups_to_deposit=cashups.count_cash_ups(actor, deposited=False),
        farms_pending=catalog.count_farms(actor, status=FarmStatus.PENDING),
        seller_payouts_awaiting=seller_payouts_awaiting,
        seller_payouts_run=seller_payouts_run,
        programmes=programmes,
    )


def _args(*names: str) -> dict[str, Any]:
    return {name: request.args[name] for name in names if request.args.get(name)}


def _date_arg(name: str) -> date | None:
    return _date_in(request.args, name)


def _date_in(values: Mapping[str, str], name: str) -> date | None:
    raw = values.get(name) or ""
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def _load(schema: ma.Schema, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` loaded by the API's schema for the same action (its rules,
    its messages)."""
    try:
        return schema.load(values)  # type: ignore[no-any-return]
    except ma.ValidationError as error:
        raise Invalid("The form has mistakes; nothing was changed.", field_errors(error.messages_dict)) from None


def _form(schema: ma.Schema, *, blank_clears: bool = False) -> dict[str, Any]:
    """The posted form loaded by the API's schema. A field left blank is not
    given, or (`blank_clears`, for an edit) given as empty where it may be."""
    values: dict[str, Any] = {}
    for name, field in schema.fields.items():
        raw = (request.form.get(name) or "").strip()
        if raw:
            values[name] = _number(raw) if isinstance(field, ma.fields.Integer) else raw
        elif blank_clears and name in request.form and field.allow_none:
            values[name] = None
    return _load(schema, values)


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name) or ""
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_ID else None


def _order_filters() -> dict[str, Any]:
    """The Orders page's filters as `orders.list_orders` takes them; a value
    that is not one (an unknown state, a date that is not a date) is left out."""
    filters: dict[str, Any] = {}
    status = request.args.get("status") or ""
    if status in OrderStatus.__members__.values():
        filters["status"] = OrderStatus(status)
    for name in ("farm_id", "buyer_id", "fulfilment_point_id"):
        if (number := _int_arg(name)) is not None:
            filters[name] = number
    for name in ("created_from", "created_to"):
        if (day := _date_arg(name)) is not None:
            filters[name] = day
    if request.args.get("overdue_for_pickup") == "true":
        filters["overdue_for_pickup"] = True
    for name in ("buyer", "farm"):
        if text := (request.args.get(name) or "").strip()[:TEXT_FILTER_LENGTH]:
            filters[name] = text
    return filters


def _shown(value: Any) -> Any:
    """A filter's value as the page's address carries it."""
    if isinstance(value, OrderStatus):
        return value.value
    return "true" if value is True else value


@blp.route("/orders", methods=["GET"])
@operator_required
def order_list() -> str:
    filters = _order_filters()
    page = orders.list_order_rows(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None, **filters)
    shown = {name: _shown(value) for name, value in filters.items()}
    template = "console/orders_table.html" if request.headers.get("HX-Request") else "console/orders.html"
    return render_template(
        template,
        page=page,
        filters=shown,
        count=orders.count_orders(operator(), **filters),
        states=list(OrderStatus),
    )


@blp.route("/orders.csv", methods=["GET"])
@operator_required
def order_csv() -> Response:
    filters = _order_filters()
    views: list[orders.OrderView] = []
    cursor: str | None = None
    while True:
        page = orders.list_orders(operator(), limit=CSV_PAGE_SIZE, cursor=cursor, **filters)
        views.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return csv_response(orders.order_rows(views), orders.ORDER_CSV_COLUMNS, f"orders-{business_today()}.csv")


def _order_page(order_id: int, status: int = 200, **shown: Any) -> tuple[str, int]:
    """An order's page: its parts, story and payment, what is left to
    refund of each paid line and the refunds made."""
    actor = operator()
    view = orders.get_order(actor, order_id)
    try:
        payment = payments.get_payment(actor, order_id)
    except (payments.PaymentNotFound, payments.PaymentBeingPrepared):
        payment = None
    names = {line.id: line.product_name for part in view.parts for line in part.lines}
    page = render_template(
        "console/order.html",
        view=view,
        payment=payment,
        refundable=[(left, names.get(left.line_id, "")) for left in payments.refundable(actor, order_id)],
        refunds=payments.refunds_of(actor, order_id) if payment else [],
        notice=request.args.get("notice"),
        **shown,
    )
    return page, status


@blp.route("/orders/<int:order_id>", methods=["GET"])
@operator_required
def order_detail(order_id: int) -> tuple[str, int]:
    return _order_page(order_id)


@blp.route("/orders/<int:order_id>/cancel", methods=["POST"])
@operator_required
def order_cancel(order_id: int) -> Response | tuple[str, int]:
    reason = (request.form.get("reason") or "").strip()
    if not reason:
        return _order_page(order_id, 422, reason_missing=True)
    orders.cancel_order(operator(), order_id, reason)
    return redirect(url_for("console.order_detail", order_id=order_id, notice="cancelled_ok"))


def _number(text: str) -> int | str:
    """Digits as a number; anything else as it is, for the schema to refuse."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS else text


def _scaled(text: str, exponent: int) -> int | str:
    """A number typed with up to `exponent` decimals as a whole number of
    its 10**-exponent parts; anything else (more decimals, not a number)
    as it is, for the schema to refuse."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return text
    parts = value.scaleb(exponent) if value.is_finite() else value
    if not parts.is_finite() or parts != parts.to_integral_value() or len(str(abs(int(parts)))) > MAX_DIGITS:
        return text
    return int(parts)


def _amount(text: str, currency: str) -> int | str:
    """An amount typed in major units (yuan: `1234.5`) as minor units."""
    return _scaled(text, minor_unit_exponent(currency))


@blp.route("/cash-ups", methods=["GET"])
@operator_required
def cash_up_list() -> str:
    """Stations' cash-ups, newest first: all, flagged (a count or a deposit
    other than expected), or waiting for their deposit, with the deposit
    form for those."""
    shown = request.args.get("show")
    filters: dict[str, Any] = {"flagged": {"flagged": True}, "to_deposit": {"deposited": False}}.get(shown or "", {})
    page = cashups.list_cash_ups(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None, **filters)
    points = catalog.point_names(c["fulfilment_point_id"] for c in page.items)
    return render_template(
        "console/cash_ups.html",
        page=page,
        points=points,
        show=shown if filters else None,
        currency=current_app.config["MARKET_CURRENCY"],
        notice=request.args.get("notice"),
    )


@blp.route("/cash-ups/<int:cash_up_id>/deposit", methods=["POST"])
@operator_required
def cash_up_deposit(cash_up_id: int) -> Response:
    """Confirm the bank received a cash-up's cash, as `POST
    /api/v1/cash-ups/<id>/deposit` does (its schema, its service); the
    amount is typed in yuan."""
    form = {name: (request.form.get(name) or "").strip() for name in ("bank_reference", "amount", "note")}
    values: dict[str, Any] = {name: value for name, value in form.items() if value}
    if "amount" in values:
        values["amount"] = _amount(values["amount"], current_app.config["MARKET_CURRENCY"])
    cashups.confirm_deposit(operator(), cash_up_id, **_load(DepositConfirmSchema(), values))
    return redirect(url_for("console.cash_up_list", show="to_deposit", notice="deposit_confirmed"))


@blp.route("/orders/<int:order_id>/refund", methods=["POST"])
@operator_required
def order_refund(order_id: int) -> Response | tuple[str, int]:
    """Refund grams of paid lines, or everything left, with a reason, as
    `POST /api/v1/orders/<id>/refunds` does (its schema, its service); the
    first post shows what will be refunded, the second (confirmed) refunds."""
    everything = request.form.get("everything") == "yes"
    lines = [
        {"line_id": _number(name.removeprefix("grams-")), "grams": _number(value)}
        for name, value in request.form.items()
        if name.startswith("grams-") and value.strip()
    ]
    reason = (request.form.get("reason") or "").strip()
    body = _load(RefundRequestSchema(), {"lines": None if everything else lines, "reason": reason})
    if request.form.get("confirmed") != "yes":
        return _order_page(order_id, refund_asked=body)
    wanted = None if body["lines"] is None else [LineRefund(**line) for line in body["lines"]]
    payments.request_refund(operator(), order_id, lines=wanted, reason=body["reason"])
    return redirect(url_for("console.order_detail", order_id=order_id, notice="refund_requested"))


@blp.route("/attention/payments", methods=["GET"])
@operator_required
def payment_attention() -> str:
    page = payments.list_attention(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template("console/payment_attention.html", page=page)


@blp.route("/attention/holds", methods=["GET"])
@operator_required
def hold_list() -> str:
    page = payments.list_holds_lapsing(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template("console/holds.html", page=page, hours=current_app.config["HOLD_WARNING_HOURS"])


@blp.route("/attention/webhook-deliveries", methods=["GET"])
@operator_required
def webhook_delivery_list() -> str:
    page = notifications.list_failed_deliveries(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template("console/webhook_deliveries.html", page=page, notice=request.args.get("notice"))


@blp.route("/webhook-endpoints/<int:endpoint_id>/deliveries/<int:delivery_id>/redeliver", methods=["POST"])
@operator_required
def webhook_redeliver(endpoint_id: int, delivery_id: int) -> Response:
    notifications.redeliver(operator(), endpoint_id, delivery_id)
    return redirect(url_for("console.webhook_delivery_list", notice="redelivered"))


@blp.route("/attention/sales-channels", methods=["GET"])
@operator_required
def channel_list() -> str:
    actor = operator()
    page = inventory.list_channels(actor, in_error=True, limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template("console/channels.html", page=page)


def _impact_query() -> tuple[date, date, str]:
    """The impact page's period and grouping: by default the weeks since
    IMPACT_WEEKS weeks ago, by county."""
    day = business_today()
    first = _date_arg("from") or _week_start(day) - timedelta(weeks=IMPACT_WEEKS - 1)
    last = _date_arg("to") or day
    return first, last, "programme" if request.args.get("group_by") == "programme" else "county"


def _weeks(first: date, last: date) -> list[tuple[date, date]]:
    """The weeks (Monday to Sunday) of `first` to `last`, cut to the period
    at its ends, the last IMPACT_CHART_WEEKS of them at most."""
    weeks: list[tuple[date, date]] = []
    monday = _week_start(last)
    while monday + timedelta(days=6) >= first and len(weeks) < IMPACT_CHART_WEEKS:
        weeks.append((max(monday, first), min(monday + timedelta(days=6), last)))
        monday -= timedelta(weeks=1)
    return weeks[::-1]


def _group_label(row: dict[str, Any], group_by: str) -> str:
    return f"{row['province']} {row['county']}" if group_by == "county" else str(row["programme"])


@blp.route("/impact", methods=["GET"])
@operator_required
def impact() -> str:
    first, last, group_by = _impact_query()
    actor = operator()
    report = reports.impact(actor, start=first, end=last, group_by=group_by)
    weeks = _weeks(first, last)
    totals = reports.impact_totals(actor, periods=weeks, group_by=group_by)
    weekly = [(since, figures) for (since, _), figures in zip(weeks, totals, strict=True)]
    chart = {
        "groups": [_group_label(row, group_by) for row in report["rows"]],
        "kg": [row["grams_sold"] / 1000 for row in report["rows"]],
        "sales": [row["sales"] / 100 for row in report["rows"]],
        "weeks": [since.isoformat() for since, _ in weekly],
        "weekly_kg": [totals["grams_sold"] / 1000 for _, totals in weekly],
        "weekly_sales": [totals["sales"] / 100 for _, totals in weekly],
        "words": {key: translate(key) for key in ("sold_kg", "sales", "week_of")},
    }
    sellers = commissions.sales_by_seller(actor, first=first, last=last)
    stations = catalog.point_names(row["fulfilment_point_id"] for row in sellers["rows"] if row["fulfilment_point_id"])
    return render_template(
        "console/impact.html", report=report, chart=chart, weekly=weekly, sellers=sellers, stations=stations
    )


@blp.route("/impact.csv", methods=["GET"])
@operator_required
def impact_csv() -> Response:
    first, last, group_by = _impact_query()
    report = reports.impact(operator(), start=first, end=last, group_by=group_by)
    name = f"impact-{group_by}-{first}-{last}.csv"
    return csv_response(reports.impact_rows(report), reports.CSV_COLUMNS[group_by], name)


@blp.route("/impact/sellers.csv", methods=["GET"])
@operator_required
def impact_sellers_csv() -> Response:
    """The impact page's period by station and host: the API's CSV of
    `GET /api/v1/reports/sellers` (other columns than the impact CSV's)."""
    first, last, _ = _impact_query()
    report = commissions.sales_by_seller(operator(), first=first, last=last)
    name = f"sales-by-seller-{first}-{last}.csv"
    return csv_response(commissions.sales_rows(report["rows"]), commissions.SALES_COLUMNS, name)


@blp.route("/people", methods=["GET"])
@operator_required
def people() -> str:
    text = (request.args.get("q") or "").strip()
    found = accounts.find_users(operator(), text, limit=PAGE_SIZE) if text else []
    template = "console/people_table.html" if request.headers.get("HX-Request") else "console/people.html"
    return render_template(template, q=text, users=found)


@blp.route("/farms", methods=["GET"])
@operator_required
def farm_list() -> str:
    status = request.args.get("status") or ""
    filters = {"status": FarmStatus(status)} if status in FarmStatus.__members__.values() else {}
    page = catalog.list_farms(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None, **filters)
    return render_template(
        "console/farms.html",
        page=page,
        status=status if filters else "",
        statuses=list(FarmStatus),
        count=catalog.count_farms(operator(), **filters),
        notice=request.args.get("notice"),
    )


@blp.route("/farms/<int:farm_id>/verify", methods=["POST"])
@operator_required
def farm_verify(farm_id: int) -> Response:
    catalog.verify_farm(operator(), farm_id)
    return redirect(url_for("console.farm_list", status=request.form.get("status") or None, notice="farm_verified"))


@blp.route("/farms/<int:farm_id>/suspend", methods=["POST"])
@operator_required
def farm_suspend(farm_id: int) -> Response:
    catalog.suspend_farm(operator(), farm_id)
    return redirect(url_for("console.farm_list", status=request.form.get("status") or None, notice="farm_suspended"))


@blp.route("/points", methods=["GET"])
@operator_required
def point_list() -> str:
    page = catalog.list_fulfilment_points(limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    staff = {point.id: orders.list_station_staff(operator(), point.id) for point in page.items}
    return render_template("console/points.html", page=page, staff=staff, notice=request.args.get("notice"))


def _point_form(point: FulfilmentPoint | None = None) -> str:
    centres = catalog.list_fulfilment_points(kind=FulfilmentPointKind.COUNTY_CENTRE, limit=CENTRES_SHOWN).items
    return render_template("console/point_form.html", point=point, centres=centres, kinds=list(FulfilmentPointKind))


@blp.route("/points/new", methods=["GET"])
@operator_required
def point_new() -> str:
    return _point_form()


@blp.route("/points", methods=["POST"])
@operator_required
def point_create() -> Response:
    body = _form(FulfilmentPointCreateSchema())
    point = catalog.create_fulfilment_point(operator(), **body)
    return redirect(url_for("console.point_list", notice="point_saved", _anchor=f"point-{point.id}"))


@blp.route("/points/<int:point_id>/edit", methods=["GET"])
@operator_required
def point_edit(point_id: int) -> str:
    return _point_form(catalog.get_fulfilment_point(point_id))


@blp.route("/points/<int:point_id>", methods=["POST"])
@operator_required
def point_update(point_id: int) -> Response:
    body = _form(FulfilmentPointUpdateSchema(), blank_clears=True)
    catalog.update_fulfilment_point(operator(), point_id, **body)
    return redirect(url_for("console.point_list", notice="point_saved", _anchor=f"point-{point_id}"))


@blp.route("/points/<int:point_id>/staff", methods=["POST"])
@operator_required
def staff_grant(point_id: int) -> Response | tuple[str, int]:
    user_id = request.form.get("user_id") or ""
    if not (user_id.isascii() and user_id.isdigit() and 0 < int(user_id) <= MAX_ID):
        return render_template("console/message.html", message="error", detail=translate("user_id")), 422
    orders.grant_station_staff(operator(), point_id, int(user_id))
    return redirect(url_for("console.point_list", notice="staff_granted"))


@blp.route("/points/<int:point_id>/staff/<int:user_id>/revoke", methods=["POST"])
@operator_required
def staff_revoke(point_id: int, user_id: int) -> Response:
    orders.revoke_station_staff(operator(), point_id, user_id)
    return redirect(url_for("console.point_list", notice="staff_revoked"))


@blp.route("/reconciliations", methods=["GET"])
@operator_required
def reconciliation_list() -> str:
    page = reconciliation.list_runs(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    runs = [run | {"items": sum(run["counts"][outcome] for outcome in Outcome)} for run in page.items]
    day = business_today()
    return render_template(
        "console/reconciliations.html", page=page, runs=runs, default_from=day - timedelta(days=7), today=day
    )


@blp.route("/reconciliations", methods=["POST"])
@operator_required
def reconciliation_start() -> Response:
    """Reconcile the business days asked for, up to now if they run to today."""
    first, last = (_date_in(request.form, name) for name in ("from", "to"))
    if first is None or last is None:
        raise Invalid("Give the first and last day to reconcile.", {"from": ["A day."], "to": ["A day."]})
    since, until = business_day_range(first, last)
    run = reconciliation.start_run(operator(), period_start=since, period_end=min(until, utcnow()))
    return redirect(url_for("console.reconciliation_detail", run_id=run["id"], notice="reconciliation_started"))


@blp.route("/reconciliations/<int:run_id>", methods=["GET"])
@operator_required
def reconciliation_detail(run_id: int) -> str:
    actor = operator()
    run = reconciliation.get_run(actor, run_id)
    shown = request.args.get("outcome")
    outcome = Outcome(shown) if shown in set(Outcome) else None
    resolved = {"yes": True, "no": False}.get(request.args.get("resolved") or "")
    items = reconciliation.list_items(
        actor,
        run_id,
        outcome=outcome,
        resolved=resolved,
        limit=PAGE_SIZE,
        cursor=request.args.get("cursor") or None,
    )
    return render_template(
        "console/reconciliation.html",
        run=run,
        items=items,
        outcome=outcome,
        resolved=resolved,
        outcomes=list(Outcome),
        notice=request.args.get("notice"),
    )


@blp.route("/reconciliations/<int:run_id>/items/<int:item_id>/resolve", methods=["POST"])
@operator_required
def reconciliation_resolve(run_id: int, item_id: int) -> Response:
    body = _form(ResolveSchema())
    reconciliation.resolve_item(operator(), run_id, item_id, **body)
    return redirect(url_for("console.reconciliation_detail", run_id=run_id, notice="resolved_ok"))


@blp.route("/payout-runs", methods=["GET"])
@operator_required
def payout_run_list() -> str:
    page = payouts.list_runs(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template(
        "console/payout_runs.html",
        page=page,
        yesterday=business_today() - timedelta(days=1),
        notice=request.args.get("notice"),
    )


@blp.route("/payout-runs", methods=["POST"])
@operator_required
def payout_run_start() -> Response:
    period_end = _date_in(request.form, "period_end")
    if period_end is None:
        raise Invalid("Give the last business day the run pays for.", {"period_end": ["A day."]})
    run = payouts.create_run(operator(), period_end=period_end)
    return redirect(url_for("console.payout_run_detail", run_id=run.id, notice="payout_run_made"))


@blp.route("/payout-runs/<int:run_id>", methods=["GET"])
@operator_required
def payout_run_detail(run_id: int) -> str:
    actor = operator()
    run = payouts.get_run(actor, run_id)
    page = payouts.list_payouts(actor, run_id=run_id, limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    farms = catalog.farm_names({p.farm_id for p in page.items} | {skip.farm_id for skip in run.skipped})
    sellers = commissions.run_sellers(actor, run_id)
    return render_template(
        "console/payout_run.html",
        run=run,
        page=page,
        farms=farms,
        sellers=sellers,
        sellers_named=seller_names(
            {p.seller_id for p in sellers["payouts"]} | {skip.seller_id for skip in sellers["skipped"]}
        ),
        seller_statuses=SellerPayoutStatus,
        statuses=PayoutStatus,
        notice=request.args.get("notice"),
    )


@blp.route("/payout-runs/<int:run_id>/bank-file.csv", methods=["GET"])
@operator_required
def payout_bank_file(run_id: int) -> Response:
    rows = payouts.bank_file(operator(), run_id)
    return csv_response(rows, payouts.BANK_FILE_COLUMNS, f"payout-run-{run_id}-bank-file.csv")


@blp.route("/payouts/<int:payout_id>/statement.csv", methods=["GET"])
@operator_required
def payout_statement(payout_id: int) -> Response:
    rows = payouts.statement_rows(payouts.statement(operator(), payout_id))
    return csv_response(rows, payouts.STATEMENT_COLUMNS, f"payout-{payout_id}-statement.csv")


@blp.route("/payouts/<int:payout_id>/confirm", methods=["POST"])
@operator_required
def payout_confirm(payout_id: int) -> Response:
    body = _form(ConfirmSchema())
    payout = payouts.confirm_bank_transfer(operator(), payout_id, **body)
    return redirect(url_for("console.payout_run_detail", run_id=payout.run_id, notice="payout_confirmed"))


@blp.route("/payouts/<int:payout_id>/flag", methods=["POST"])
@operator_required
def payout_flag(payout_id: int) -> Response:
    body = _form(FlagSchema())
    payout = payouts.flag_for_follow_up(operator(), payout_id, **body)
    return redirect(url_for("console.payout_run_detail", run_id=payout.run_id, notice="payout_flagged"))


@blp.route("/payouts/<int:payout_id>/retry", methods=["POST"])
@operator_required
def payout_retry(payout_id: int) -> Response:
    payout = payouts.retry_payout(operator(), payout_id)
    return redirect(url_for("console.payout_run_detail", run_id=payout.run_id, notice="payout_retried"))


@blp.route("/payout-runs/<int:run_id>/seller-bank-file.csv", methods=["GET"])
@operator_required
def seller_bank_file(run_id: int) -> Response:
    rows = commissions.bank_file(operator(), run_id)
    return csv_response(rows, commissions.BANK_FILE_COLUMNS, f"payout-run-{run_id}-seller-bank-file.csv")


@blp.route("/seller-payouts/<int:payout_id>/statement.csv", methods=["GET"])
@operator_required
def seller_payout_statement(payout_id: int) -> Response:
    rows = commissions.seller_payout_rows(operator(), payout_id)
    return csv_response(rows, commissions.STATEMENT_COLUMNS, f"seller-payout-{payout_id}-statement.csv")


@blp.route("/seller-payouts/<int:payout_id>/confirm", methods=["POST"])
@operator_required
def seller_payout_confirm(payout_id: int) -> Response:
    body = _form(ConfirmSchema())
    payout = commissions.confirm_seller_payout(operator(), payout_id, **body)
    return redirect(
        url_for("console.payout_run_detail", run_id=payout.run_id, notice="payout_confirmed", _anchor="sellers")
    )


@blp.route("/sellers", methods=["GET"])
@operator_required
def seller_list() -> str:
    shown = request.args.get("kind") or ""
    kind = SellerKind(shown) if shown in SellerKind.__members__.values() else None
    page = commissions.list_sellers(operator(), limit=PAGE_SIZE, cursor=request.args.get("cursor") or None, kind=kind)
    return render_template(
        "console/sellers.html",
        page=page,
        kind=kind.value if kind else "",
        kinds=list(SellerKind),
        points=catalog.point_names(s["fulfilment_point_id"] for s in page.items if s["fulfilment_point_id"]),
        notice=request.args.get("notice"),
    )


def _rate_typed(seller: Mapping[str, Any]) -> dict[str, str]:
    """A seller's rate as its form shows it: percent, or yuan per order."""
    if seller["per_order"] is not None:
        currency = current_app.config["MARKET_CURRENCY"]
        return {"rate_unit": "per_order", "rate": format_minor(seller["per_order"], minor_unit_exponent(currency))}
    return {"rate_unit": "percent", "rate": format_minor(seller["rate_bp"], BASIS_POINTS_EXPONENT)}


def _seller_form(seller: Mapping[str, Any] | None, refused: DomainError | None = None) -> tuple[str, int]:
    """The form to make a seller (`seller` None) or edit one; after a
    refusal, with what was typed and the refusal's reasons."""
    if refused is not None:
        typed: Mapping[str, Any] = request.form
    elif seller is not None:
        typed = {"name": seller["name"], "active": "yes" if seller["active"] else ""} | _rate_typed(seller)
    else:
        typed = {"active": "yes"}
    stations = catalog.list_fulfilment_points(kind=FulfilmentPointKind.VILLAGE_STATION, limit=STATIONS_SHOWN).items
    page = render_template(
        "console/seller_form.html",
        seller=seller,
        typed=typed,
        refused=refused,
        stations=stations,
        kinds=list(SellerKind),
        point=catalog.point_names([seller["fulfilment_point_id"]]) if seller and seller["fulfilment_point_id"] else {},
    )
    return page, refused.status if refused else 200


def _host(text: str) -> int:
    """The account whose email (case aside) or phone is `text`, found as
    the People page finds accounts."""
    wanted = text.strip().casefold()
    for user in accounts.find_users(operator(), wanted, limit=PAGE_SIZE):
        if wanted in ((user.email or "").casefold(), (user.phone or "").casefold()):
            return user.id
    raise Invalid("No account has this email or phone.", {"user": ["No account has this email or phone."]})


def _seller_body(schema: ma.Schema) -> dict[str, Any]:
    """The seller form loaded by the API's `schema`: the rate typed in
    percent (`2.5`) or, for a station, yuan per order (`0.5`), each
    converted exactly; a host found by email or phone; bank details blank
    are not given (an edit keeps them)."""
    form = request.form
    values: dict[str, Any] = {
        name: text for name in SELLER_TEXTS if name in schema.fields and (text := (form.get(name) or "").strip())
    }
    if rate := (form.get("rate") or "").strip():
        if form.get("rate_unit") == "per_order":
            values["per_order"] = _amount(rate, current_app.config["MARKET_CURRENCY"])
        else:
            values["rate_bp"] = _scaled(rate, BASIS_POINTS_EXPONENT)
    if "active" in schema.fields:
        values["active"] = form.get("active") == "yes"
    if values.get("kind") == SellerKind.STATION and (point := (form.get("fulfilment_point_id") or "").strip()):
        values["fulfilment_point_id"] = _number(point)
    if values.get("kind") == SellerKind.HOST and (user := (form.get("user") or "").strip()):
        values["user_id"] = _host(user)
    return _load(schema, values)


@blp.route("/sellers/new", methods=["GET"])
@operator_required
def seller_new() -> tuple[str, int]:
    return _seller_form(None)


@blp.route("/sellers", methods=["POST"])
@operator_required
def seller_create() -> Response | tuple[str, int]:
    try:
        seller = commissions.create_seller(operator(), **_seller_body(SellerCreateSchema()))
    except (Invalid, Conflict, NotFound) as refused:
        return _seller_form(None, refused)
    return redirect(url_for("console.seller_detail", seller_id=seller["id"], notice="seller_saved"))


@blp.route("/sellers/<int:seller_id>/edit", methods=["GET"])
@operator_required
def seller_edit(seller_id: int) -> tuple[str, int]:
    return _seller_form(commissions.get_seller(operator(), seller_id))


@blp.route("/sellers/<int:seller_id>", methods=["POST"])
@operator_required
def seller_update(seller_id: int) -> Response | tuple[str, int]:
    try:
        commissions.update_seller(operator(), seller_id, _seller_body(SellerUpdateSchema()))
    except (Invalid, Conflict) as refused:
        return _seller_form(commissions.get_seller(operator(), seller_id), refused)
    return redirect(url_for("console.seller_detail", seller_id=seller_id, notice="seller_saved"))


@blp.route("/sellers/<int:seller_id>", methods=["GET"])
@operator_required
def seller_detail(seller_id: int) -> str:
    actor = operator()
    seller = commissions.get_seller(actor, seller_id)
    entries = commissions.list_entries(actor, seller_id, limit=PAGE_SIZE, cursor=request.args.get("cursor") or None)
    return render_template(
        "console/seller.html",
        seller=seller,
        entries=entries,
        point=catalog.point_names([seller["fulfilment_point_id"]]) if seller["fulfilment_point_id"] else {},
        notice=request.args.get("notice"),
    )


@blp.route("/sellers/<int:seller_id>/entries.csv", methods=["GET"])
@operator_required
def seller_entries_csv(seller_id: int) -> Response:
    rows = commissions.entry_rows(operator(), seller_id)
    return csv_response(rows, commissions.STATEMENT_COLUMNS, f"seller-{seller_id}-entries.csv")
