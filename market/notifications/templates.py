# ruff: noqa: RUF001  (Chinese texts use full-width punctuation on purpose)
"""What each event says, in Chinese and English, and who hears it by default.

Texts are short enough for one SMS; the email uses the same text with a
subject line. Placeholders come from the context `service` builds per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from market.accounts.models import Language, Role
from market.notifications.models import Channel

EMAIL = (Channel.EMAIL,)
EMAIL_SMS = (Channel.EMAIL, Channel.SMS)


@dataclass(frozen=True)
class Template:
    # Who hears it: the order's buyer, its farms' owners, the operators; none
    # for an account's own mail, sent by email whatever the preferences and
    # never to webhooks.
    audiences: tuple[Role, ...]
    defaults: tuple[Channel, ...]
    subject: dict[Language, str]
    body: dict[Language, str]
    # What the farmer hears where it differs from the others (the buyer
    # hears an order is paid; its farms, to start packing).
    farmer_subject: dict[Language, str] | None = None
    farmer_body: dict[Language, str] | None = None


def _t(
    audience: Role | tuple[Role, ...],
    defaults: tuple[Channel, ...],
    zh: tuple[str, str],
    en: tuple[str, str],
    *,
    farmer: tuple[tuple[str, str], tuple[str, str]] | None = None,
) -> Template:
    return Template(
        audience if isinstance(audience, tuple) else (audience,),
        defaults,
        {Language.ZH: zh[0], Language.EN: en[0]},
        {Language.ZH: zh[1], Language.EN: en[1]},
        {Language.ZH: farmer[0][0], Language.EN: farmer[1][0]} if farmer else None,
        {Language.ZH: farmer[0][1], Language.EN: farmer[1][1]} if farmer else None,
    )


TEMPLATES: dict[str, Template] = {
    "account.confirmation": _t(
        (),
        EMAIL,
        (
            "请确认您的农市账户",
            "【农市】{name}，您好！请在 {hours} 小时内打开以下链接确认邮箱，确认后即可登录：{link}\n"
            "（也可将确认码提交到 POST /api/v1/accounts/confirmation：{token}）\n如果您没有注册，请忽略本邮件。",
        ),
        (
            "Confirm your Farm market account",
            "[Farm market] Hello {name}, open this link within {hours} hours to confirm your address; the account "
            "can log in once confirmed: {link}\n(Or send the token to POST /api/v1/accounts/confirmation: {token})"
            "\nIf you did not register, ignore this email.",
        ),
    ),
    "account.registration_attempted": _t(
        (),
        EMAIL,
        (
            "有人尝试用您的邮箱注册农市账户",
            "【农市】{name}，您好！有人尝试用本邮箱注册新账户。您已有账户，请直接用密码登录。"
            "如果不是您本人操作，您的账户没有任何变化，无需处理。",
        ),
        (
            "Someone tried to register with your address",
            "[Farm market] Hello {name}, someone tried to register a new account with this address. You already "
            "have one: log in with your password. If it was not you, nothing changed and you need do nothing.",
        ),
    ),
    "order.placed": _t(
        Role.FARMER,
        EMAIL_SMS,
        ("新订单 #{order_id}", "【农市】新订单 #{order_id}：{lines}。请在付款后尽快备货。"),
        ("New order #{order_id}", "[Farm market] New order #{order_id}: {lines}. Pack it once it is paid."),
    ),
    "account.claim_code": _t(
        (),
        (Channel.SMS,),
        (
            "账户认领码",
            "【农市】认领站点为您开设的账户的验证码 {code}，{minutes} 分钟内有效。"
            "认领后打开发到所填邮箱的链接确认邮箱，即可用邮箱和密码登录，订单都在账户里。",
        ),
        (
            "Your account claim code",
            "[Farm market] Code {code} claims the account your village station opened for you, valid {minutes} "
            "minutes. Then follow the link emailed to the address you give, and log in with it and your password; "
            "your orders stay with the account.",
        ),
    ),
    "order.confirmation_code": _t(
        (),
        (Channel.SMS,),
        (
            "订单确认码",
            "【农市】{station}为您代下订单 #{order_id}：{lines}，取货时付现金。"
            "确认码 {code}，{minutes} 分钟内有效，请告知站点工作人员。",
        ),
        (
            "Your order confirmation code",
            "[Farm market] {station} placed order #{order_id} for you: {lines}, paid in cash when you collect it. "
            "Confirmation code {code}, valid {minutes} minutes: tell it to the station's staff.",
        ),
    ),
    "order.confirmed": _t(
        (Role.BUYER, Role.FARMER),
        EMAIL,
        ("订单 #{order_id} 已确认", "【农市】订单 #{order_id} 已确认，到站后凭取货码付现金取货。"),
        (
            "Order #{order_id} is confirmed",
            "[Farm market] Order #{order_id} is confirmed; pay in cash with your pickup code when it is at "
            "the station.",
        ),
        farmer=(
            (
                "订单 #{order_id} 已确认，请备货",
                "【农市】站点代下的订单 #{order_id} 已确认，取货时付现金，请开始备货：{lines}。",
            ),
            (
                "Order #{order_id} is confirmed: pack it",
                "[Farm market] Order #{order_id}, placed at a station and paid in cash on collection, is confirmed: "
                "start packing: {lines}.",
            ),
        ),
    ),
    "order.paid": _t(
        (Role.BUYER, Role.FARMER),
        EMAIL,
        ("订单 #{order_id} 已付款", "【农市】订单 #{order_id} 已付款，金额 {total} {currency}。"),
        ("Order #{order_id} is paid", "[Farm market] Order #{order_id} is paid: {total} {currency}."),
        farmer=(
            ("订单 #{order_id} 已付款，请备货", "【农市】订单 #{order_id} 已付款，请开始备货：{lines}。"),
            (
                "Order #{order_id} is paid: pack it",
                "[Farm market] Order #{order_id} is paid; start packing: {lines}.",
            ),
        ),
    ),
    "order.packed": _t(
        Role.BUYER,
        EMAIL,
        ("订单 #{order_id} 已打包", "【农市】订单 #{order_id} 已称重打包，应付 {total} {currency}。"),
        ("Order #{order_id} is packed", "[Farm market] Order #{order_id} is weighed and packed: {total} {currency}."),
    ),
    "order.shipped": _t(
        Role.BUYER,
        EMAIL,
        ("订单 #{order_id} 已发货", "【农市】订单 #{order_id} 已发货。"),
        ("Order #{order_id} has shipped", "[Farm market] Order #{order_id} has shipped."),
    ),
    "order.ready_for_pickup": _t(
        Role.BUYER,
        EMAIL_SMS,
        ("订单 #{order_id} 可以取货", "【农市】订单 #{order_id} 已到 {point}，取货码 {pickup_code}。"),
        (
            "Order #{order_id} is ready for pickup",
            "[Farm market] Order #{order_id} is at {point}. Pickup code: {pickup_code}.",
        ),
    ),
    "order.pickup_code_renewed": _t(
        Role.BUYER,
        EMAIL_SMS,
        ("订单 #{order_id} 的新取货码", "【农市】订单 #{order_id} 的取货码已更新为 {pickup_code}，旧取货码作废。"),
        (
            "A new pickup code for order #{order_id}",
            "[Farm market] The pickup code of order #{order_id} is now {pickup_code}; the old one no longer works.",
        ),
    ),
    "order.cancelled": _t(
        (Role.BUYER, Role.FARMER),
        EMAIL,
        ("订单 #{order_id} 已取消", "【农市】订单 #{order_id} 已取消：{reason}"),
        ("Order #{order_id} was cancelled", "[Farm market] Order #{order_id} was cancelled: {reason}"),
        farmer=(
            (
                "订单 #{order_id} 已取消，请停止备货",
                "【农市】订单 #{order_id} 已取消，请勿打包或发货：{lines}。原因：{reason}",
            ),
            (
                "Order #{order_id} was cancelled: do not pack it",
                "[Farm market] Order #{order_id} was cancelled; do not pack or ship it: {lines}. Reason: {reason}",
            ),
        ),
    ),
    "order.expired": _t(
        (Role.BUYER, Role.FARMER),
        EMAIL,
        ("订单 #{order_id} 已过期", "【农市】订单 #{order_id} 未在时限内付款，已关闭。"),
        ("Order #{order_id} expired", "[Farm market] Order #{order_id} was not paid in time and is closed."),
        farmer=(
            (
                "订单 #{order_id} 已过期，无需备货",
                "【农市】订单 #{order_id} 未在时限内付款，已关闭，请勿备货：{lines}。",
            ),
            (
                "Order #{order_id} expired: do not pack it",
                "[Farm market] Order #{order_id} was not paid in time and is closed; do not pack it: {lines}.",
            ),
        ),
    ),
    "payment.failed": _t(
        Role.BUYER,
        EMAIL_SMS,
        ("订单 #{order_id} 付款失败", "【农市】订单 #{order_id} 付款失败，请在订单过期前重新付款。"),
        (
            "Payment for order #{order_id} failed",
            "[Farm market] Payment for order #{order_id} failed; pay again before the order expires.",
        ),
    ),
    "refund.failed": _t(
        Role.BUYER,
        EMAIL_SMS,
        (
            "订单 #{order_id} 的退款未能完成",
            "【农市】订单 #{order_id} 的一笔退款被银行退回或拒绝，未到账。平台运营人员会与您联系。",
        ),
        (
            "A refund for order #{order_id} did not go through",
            "[Farm market] A refund for order #{order_id} was refused or returned by the bank and has not reached "
            "you. Our operators will contact you.",
        ),
    ),
    "payment.hold_expiring": _t(
        (Role.FARMER, Role.OPERATOR),
        EMAIL_SMS,
        (
            "订单 #{order_id} 的付款授权即将失效",
            "【农市】订单 #{order_id} 的银行卡授权将于 {hold_until} 失效，请在此之前打包，否则须请买家重新付款。",
        ),
        (
            "The card hold of order #{order_id} lapses soon",
            "[Farm market] The card hold of order #{order_id} lapses at {hold_until}; pack it before then, "
            "or the buyer must pay again.",
        ),
    ),
    "payment.hold_lapsed": _t(
        (Role.BUYER, Role.FARMER),
        EMAIL_SMS,
        (
            "订单 #{order_id} 需要重新付款",
            "【农市】订单 #{order_id} 的银行卡授权已失效，请在 {renew_by} 前重新付款，否则订单将被取消。"
            "农户暂停发货直至付款。",
        ),
        (
            "Order #{order_id} needs paying again",
            "[Farm market] The card hold of order #{order_id} lapsed. Pay again by {renew_by} or the order is "
            "cancelled; the farm holds it until then.",
        ),
    ),
    "payment.renewed": _t(
        Role.FARMER,
        EMAIL,
        ("订单 #{order_id} 已重新付款", "【农市】订单 #{order_id} 已重新付款，可照常打包发货。"),
        ("Order #{order_id} is paid again", "[Farm market] Order #{order_id} is paid again; pack and ship as usual."),
    ),
    "payout.paid": _t(
        Role.FARMER,
        EMAIL,
        ("结算 #{payout_id} 已付款", "【农市】结算 #{payout_id} 已付给 {farm}：{amount} {currency}。"),
        ("Payout #{payout_id} is paid", "[Farm market] Payout #{payout_id} to {farm} is paid: {amount} {currency}."),
    ),
    "payout.failed": _t(
        Role.FARMER,
        EMAIL_SMS,
        (
            "结算 #{payout_id} 失败",
            "【农市】结算 #{payout_id}（{farm}，{amount} {currency}）付款失败：{reason}。请检查收款方式。",
        ),
        (
            "Payout #{payout_id} failed",
            "[Farm market] Payout #{payout_id} to {farm} ({amount} {currency}) failed: {reason}. "
            "Check the payout method.",
        ),
    ),
    "cash_up.flagged": _t(
        Role.OPERATOR,
        EMAIL,
        (
            "站点现金日结 #{cash_up_id} 有差异",
            "【农市】{station} {day} 的现金日结 #{cash_up_id}：应收 {expected} {currency}，实点 {counted} {currency}，"
            "相差 {difference} {currency}。备注：{note}。请核对后确认存款。",
        ),
        (
            "Cash-up #{cash_up_id} has a difference",
            "[Farm market] The cash-up #{cash_up_id} of {station} for {day}: expected {expected} {currency}, "
            "counted {counted} {currency}, {difference} {currency} apart. Note: {note}. Check it before "
            "confirming the deposit.",
        ),
    ),
    "listing.stock_low": _t(
        Role.FARMER,
        EMAIL,
        ("{product} 库存不足", "【农市】{product}（{sku}）库存仅剩 {stock_g} 克，低于提醒线 {threshold_g} 克。"),
        (
            "{product} is running low",
            "[Farm market] {product} ({sku}) is down to {stock_g} g, below your {threshold_g} g threshold.",
        ),
    ),
    "inventory.sale_refused": _t(
        Role.FARMER,
        EMAIL_SMS,
        (
            "{channel} 的销售超出库存",
            "【农市】渠道「{channel}」报告售出 {product} {grams} 克，但库存只有 {stock_g} 克；未扣减，请核对库存。",
        ),
        (
            "A sale on {channel} exceeds your stock",
            "[Farm market] {channel} reported selling {grams} g of {product} but only {stock_g} g is in stock; "
            "nothing was taken. Check your stock.",
        ),
    ),
}


# What an event says in a case its usual text would get wrong, by name;
# the event, its audience and its channels stay the event's own.
# An order paid on collection that waited at its station and was never
# collected expires too, but its goods were packed and shipped.
EXPIRED_UNCOLLECTED = "order.expired.uncollected"
VARIANTS: dict[str, Template] = {
    EXPIRED_UNCOLLECTED: _t(
        (Role.BUYER, Role.FARMER),
        EMAIL,
        ("订单 #{order_id} 已过期", "【农市】订单 #{order_id} 在 {point} 超过取货期限未取货付款，已关闭。"),
        (
            "Order #{order_id} expired",
            "[Farm market] Order #{order_id} was not collected and paid for at {point} in time and is closed.",
        ),
        farmer=(
            (
                "订单 #{order_id} 已过期，买家未取货",
                "【农市】订单 #{order_id} 在站点超过取货期限未取货付款，已关闭：{lines}。货物仍在站点。",
            ),
            (
                "Order #{order_id} expired: not collected",
                "[Farm market] Order #{order_id} was not collected and paid for at its station in time and is "
                "closed: {lines}. The goods are at the station.",
            ),
        ),
    ),
}


class _Missing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "-"


def render(event: str, language: Language, context: dict[str, Any], role: Role | None = None) -> tuple[str, str]:
    """(subject, body) for `event` (or one of its `VARIANTS`) in `language`,
    as `role` hears it."""
    template = VARIANTS[event] if event in VARIANTS else TEMPLATES[event]
    values = _Missing(context)
    subject, body = template.subject, template.body
    if role == Role.FARMER and template.farmer_subject and template.farmer_body:
        subject, body = template.farmer_subject, template.farmer_body
    return subject[language].format_map(values), body[language].format_map(values)


def events_for(roles: frozenset[Role]) -> list[str]:
    """The events a user with `roles` can choose channels for, or send to a
    webhook, in a stable order."""
    return [event for event, template in TEMPLATES.items() if roles.intersection(template.audiences)]
