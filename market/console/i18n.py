# ruff: noqa: RUF001  (Chinese texts use full-width punctuation on purpose)
"""The console's words in Chinese and English, chosen by the operator's
account language (before sign-in: the browser's Accept-Language)."""

from __future__ import annotations

from flask import g, request

from market.accounts.models import Language

# key -> (Chinese, English)
MESSAGES: dict[str, tuple[str, str]] = {
    "console": ("运营控制台", "Operator console"),
    "today": ("今日", "Today"),
    "orders": ("订单", "Orders"),
    "people": ("用户", "People"),
    "farms": ("农场", "Farms"),
    "points": ("服务站点", "Fulfilment points"),
    "impact": ("影响", "Impact"),
    "attention": ("待处理", "Attention"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "email": ("邮箱", "Email"),
    "password": ("密码", "Password"),
    "operators_only": ("控制台仅限运营人员使用。", "The console is for operators only."),
    "signed_out": ("您已退出。", "You are signed out."),
    "sign_in_needed": ("请先登录。", "Please sign in."),
    "csrf_refused": (
        "表单已过期或不是本站提交的，请刷新页面后重试。",
        "The form expired or did not come from this console; reload the page and try again.",
    ),
    "too_many": ("尝试次数过多，请稍后再试。", "Too many attempts; try again later."),
    "not_found": ("找不到该页面或记录。", "No such page or record."),
    "error": ("出错了", "Something went wrong"),
    "orders_by_state": ("各状态订单", "Orders by state"),
    "status.pending_payment": ("待付款", "Placed, awaiting payment"),
    "status.confirmed": ("村民已确认，取货时付现金", "Confirmed by the villager, cash on collection"),
    "status.paid": ("已付款", "Paid"),
    "status.packed": ("已打包", "Packed"),
    "status.shipped": ("已发货", "Shipped"),
    "status.ready_for_pickup": ("在站点待取", "Waiting at stations"),
    "status.collected": ("已取货", "Collected"),
    "status.delivered": ("已送达", "Delivered"),
    "status.completed": ("已完成", "Completed"),
    "status.cancelled": ("已取消", "Cancelled"),
    "status.expired": ("已过期", "Expired"),
    "sales": ("销售额", "Sales"),
    "reconciliation": ("对账", "Reconciliation"),
    "reconciliation_runs": ("对账记录", "Reconciliation runs"),
    "start_reconciliation": ("开始对账", "Reconcile these days"),
    "reconciliation_started": (
        "对账已开始，后台处理完成后刷新本页。",
        "Reconciliation started; a worker runs it, reload this page to see it.",
    ),
    "resolved_ok": ("已标记为已处理。", "Marked as resolved."),
    "items": ("项目", "Items"),
    "outcome": ("结果", "Outcome"),
    "ours": ("我方（账本）", "Ours (ledger)"),
    "provider": ("支付机构", "The provider's"),
    "settled_as": ("结算金额", "Settled as"),
    "resolution": ("处理说明", "Resolution"),
    "resolve": ("标记已处理", "Resolve"),
    "book_fee": ("记入手续费", "Book the fee"),
    "unresolved": ("未处理", "Unresolved"),
    "resolved": ("已处理", "Resolved"),
    "all": ("全部", "All"),
    "outcome.matched": ("相符", "Matched"),
    "outcome.missing_at_gateway": ("支付机构无记录", "Missing at the provider"),
    "outcome.missing_in_ledger": ("账本无记录", "Missing in the ledger"),
    "outcome.amount_differs": ("金额不符", "Amounts differ"),
    "outcome.currency_differs": ("币种不同，无法比较", "Currencies differ"),
    "outcome.fee": ("未入账的手续费", "Fee not booked"),
    "week_of": ("周起始日", "Week of"),
    "by_week": ("每周", "Week by week"),
    "download_csv": ("下载 CSV", "Download CSV"),
    "sold_kg": ("销售重量", "Kilograms sold"),
    "this_week": ("本周", "This week"),
    "payments_attention": ("需人工处理的付款", "Payments a worker could not finish"),
    "farms_pending": ("待审核农场", "Farms waiting for verification"),
    "programmes": ("溢价项目", "Premium programmes"),
    "budget_used": ("已用预算", "Budget used"),
    "budget_cap": ("预算上限", "Budget cap"),
    "no_cap": ("无上限（买方出资）", "No cap (buyer-funded)"),
    "programme": ("项目", "Programme"),
    "sponsor": ("赞助方", "Sponsor"),
    "rate_per_kg": ("每公斤溢价", "Rate per kg"),
    "none": ("无", "None"),
    "filter": ("筛选", "Filter"),
    "status": ("状态", "State"),
    "any": ("全部", "Any"),
    "farm_id": ("农场编号", "Farm id"),
    "buyer_id": ("买家编号", "Buyer id"),
    "point_id": ("站点编号", "Point id"),
    "created_from": ("下单日期自", "Placed from"),
    "created_to": ("下单日期至", "Placed to"),
    "csv": ("导出 CSV", "Download CSV"),
    "order": ("订单", "Order"),
    "buyer": ("买家", "Buyer"),
    "farm": ("农场", "Farm"),
    "point": ("站点", "Point"),
    "total": ("合计", "Total"),
    "placed_at": ("下单时间", "Placed at"),
    "next_page": ("下一页", "Next page"),
    "story": ("订单经过", "What happened"),
    "when": ("时间", "When"),
    "event": ("事件", "Event"),
    "detail": ("说明", "Detail"),
    "actor": ("操作人", "By"),
    "parts": ("分单", "Parts"),
    "product": ("产品", "Product"),
    "ordered_kg": ("订购重量", "Ordered"),
    "weighed_kg": ("称重", "Weighed"),
    "amount": ("金额", "Amount"),
    "premium": ("溢价", "Premium"),
    "cancel_order": ("取消订单", "Cancel the order"),
    "reason": ("原因", "Reason"),
    "cancelled_ok": ("订单已取消。", "The order is cancelled."),
    "find_users": ("按邮箱或电话查找用户", "Find users by email or phone"),
    "search": ("查找", "Search"),
    "name": ("姓名", "Name"),
    "phone": ("电话", "Phone"),
    "roles": ("角色", "Roles"),
    "language": ("语言", "Language"),
    "no_results": ("没有结果。", "Nothing found."),
    "staff_of": ("站点员工", "Station staff"),
    "grant_staff": ("设为该站点员工", "Make staff of this point"),
    "revoke_staff": ("撤销员工", "Remove from staff"),
    "staff_granted": ("已授予站点员工权限。", "Staff rights granted."),
    "staff_revoked": ("已撤销站点员工权限。", "Staff rights removed."),
    "user_id": ("用户编号", "User id"),
    "county": ("县", "County"),
    "province": ("省", "Province"),
    "village": ("村", "Village"),
    "verify": ("审核通过", "Verify"),
    "suspend": ("暂停", "Suspend"),
    "farm_verified": ("农场已审核通过。", "The farm is verified."),
    "farm_suspended": ("农场已暂停。", "The farm is suspended."),
    "farm_status.pending": ("待审核", "Pending"),
    "farm_status.verified": ("已审核", "Verified"),
    "farm_status.suspended": ("已暂停", "Suspended"),
    "kind": ("类型", "Kind"),
    "parent": ("上级", "Parent"),
    "problem": ("问题", "Problem"),
    "payment_status": ("付款状态", "Payment status"),
    "period": ("期间", "Period"),
    "from": ("自", "From"),
    "to": ("至", "To"),
    "premiums_paid": ("已付溢价", "Premiums paid"),
    "premiums_reserved": ("预留溢价", "Premiums reserved"),
    "payouts_made": ("已付款给农场", "Paid out to farms"),
    "farms_paid": ("获付款农场", "Farms paid"),
    "farmers_paid": ("获付款农户", "Farmers paid"),
    "show": ("显示", "Show"),
    "signed_in_as": ("当前用户", "Signed in as"),
}


def language() -> Language:
    """The operator's language; before sign-in, the browser's choice."""
    chosen = g.get("console_language")
    if chosen is not None:
        return Language(chosen)
    best = request.accept_languages.best_match([Language.ZH.value, Language.EN.value], default=Language.ZH.value)
    return Language(best)


def translate(key: str) -> str:
    zh, en = MESSAGES[key]
    return en if language() == Language.EN else zh


def translate_known(key: str | None) -> str | None:
    """`key`'s words if it has any: for a key that comes in a link (a
    page's notice), where an unknown one is shown as nothing."""
    return translate(key) if key in MESSAGES else None
