"""Demo data for the embedded run: accounts, a catalogue of real produce
from three counties (navel oranges from Xunwu, Jiangxi; chestnuts from
Qinglong, Hebei; berry tea from Yongshun, Hunan), a village station whose
staff buy for villagers and cash up, an order of Qinglong chestnuts on its
way through the Xunwu county centre, and a livestream host who sold Xunwu
oranges with her code (she and the station earn commissions).

`seed()` is safe to run on every start: what exists is left alone, and each
demo account gets a fresh token (tokens are shown only once). The catalogue
goes through the same service functions as the API, so it obeys its rules.
"""

# Chinese text takes full-width commas, which RUF001 mistakes for a typo.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select

from market.accounts import service as accounts
from market.accounts.models import Language, Role, User
from market.auth import Actor
from market.catalog import service as catalog
from market.catalog.models import Brand, Category, Farm, FulfilmentPoint, FulfilmentPointKind, Listing, Lot
from market.commissions import service as commissions
from market.commissions.models import Seller, SellerKind
from market.extensions import db
from market.notifications.models import Notification
from market.orders import routing
from market.orders import service as orders
from market.orders.models import Order, StationStaff
from market.orders.service import LineRequest, Weighing
from market.payments import service as payments
from market.payments.gateway import gateway
from market.payments.models import Provider
from market.stations import cashups
from market.stations import service as station_orders

PASSWORD = "harvest-demo-2026"  # noqa: S105 (printed for the demo accounts)
TOKEN_TTL = timedelta(days=7)

# Each account has a mobile number, so the SMS notifications show in the
# one-command run's mailbox file along with the emails.
OPERATOR_EMAIL = "operator@farm-market.test"  # the demo operator, who signs in to the console
STAFF_EMAIL = "staff.shangche@farm-market.test"
STATION = "吉潭镇上车村服务站"
# Villagers the staff buy for (name, mobile number, grams of navel oranges): the
# first collects and pays in cash, and the day is cashed up; the second's
# order waits for the farm.
VILLAGERS = [("李桂芬", "+8613900000081", 7500), ("王德明", "+8613900000082", 5000)]
CENTRE_STAFF_EMAIL = "xunwu.centre@farm-market.test"  # staff of the Xunwu county centre
# A livestream host who sells the Xunwu oranges with her code (docs/commissions.md).
HOST_EMAIL = "xiaohong.live@farm-market.test"
HOST_CODE = "XIAOHONG"
HOSTED_ORDER_NOTE = "Demo: navel oranges sold on Xiao Hong's livestream"
ACCOUNTS: list[tuple[str, str, list[Role], Language, str]] = [
    (OPERATOR_EMAIL, "Market operations", [Role.OPERATOR], Language.EN, "+8613800000001"),
    ("buyer@farm-market.test", "Ganzhou Fresh Grocers", [Role.BUYER], Language.ZH, "+8613800000002"),
    ("liu.orchard@farm-market.test", "Liu Jianguo", [Role.FARMER], Language.ZH, "+8613800000003"),
    ("zhao.chestnut@farm-market.test", "Zhao Shuhua", [Role.FARMER], Language.ZH, "+8613800000004"),
    ("peng.tea@farm-market.test", "Peng Xiaomei", [Role.FARMER], Language.ZH, "+8613800000005"),
    # Works at STATION: places orders for villagers, takes their cash, cashes up.
    (STAFF_EMAIL, "Huang Lihua", [Role.BUYER], Language.ZH, "+8613800000006"),
    (CENTRE_STAFF_EMAIL, "Xunwu centre dispatch desk", [Role.BUYER], Language.ZH, "+8613800000007"),
    (HOST_EMAIL, "Xiao Hong", [Role.BUYER], Language.ZH, "+8613800000008"),
]


def _account(email: str, name: str, roles: list[Role], language: Language, phone: str) -> User:
    user = db.session.scalar(select(User).where(User.email == email))
    if user is not None:
        return user
    return accounts.create_account(
        email=email, password=PASSWORD, name=name, roles=roles, language=language, phone=phone
    )


CATEGORIES = [("citrus", "柑橘", "Citrus"), ("nuts", "坚果", "Nuts"), ("tea", "茶叶", "Tea")]

# Regional (geographical-indication) brands and the counties allowed to use them.
BRANDS: list[tuple[str, str, str, list[str]]] = [
    (
        "gannan-navel-orange",
        "赣南脐橙",
        "Gannan Navel Orange",
        ["寻乌县", "安远县", "定南县", "会昌县", "信丰县", "龙南市", "全南县", "瑞金市"],
    ),
    ("qinglong-chestnut", "青龙板栗", "Qinglong Chestnut", ["青龙满族自治县"]),
    ("yongshun-berry-tea", "永顺莓茶", "Yongshun Berry Tea", ["永顺县"]),
]

# (county centre, its village stations): name, village, county, province, address
POINTS: list[tuple[tuple[str, str | None, str, str, str], list[tuple[str, str | None, str, str, str]]]] = [
    (
        ("寻乌县农村电商配送中心", None, "寻乌县", "江西省", "寻乌县长宁镇"),
        [("吉潭镇上车村服务站", "上车村", "寻乌县", "江西省", "寻乌县吉潭镇上车村村委会")],
    ),
    (
        ("青龙满族自治县农产品配送中心", None, "青龙满族自治县", "河北省", "青龙满族自治县青龙镇"),
        [
            ("肖营子镇五指山村服务站", "五指山村", "青龙满族自治县", "河北省", "青龙满族自治县肖营子镇五指山村"),
            ("茨榆山乡乱石碴村服务站", "乱石碴村", "青龙满族自治县", "河北省", "青龙满族自治县茨榆山乡乱石碴村"),
        ],
    ),
    (
        ("永顺县农村电商服务中心", None, "永顺县", "湖南省", "永顺县灵溪镇"),
        [("毛坝乡毛坝村服务站", "毛坝村", "永顺县", "湖南省", "永顺县毛坝乡毛坝村")],
    ),
]
OPENING_HOURS = {
    FulfilmentPointKind.COUNTY_CENTRE: "Mon-Sat 08:00-18:00",
    FulfilmentPointKind.VILLAGE_STATION: "daily 08:00-12:00, 14:00-19:00",
}


@dataclass(frozen=True)
class DemoLot:
    code: str
    harvest_date: date
    plot: str
    grade: str
    grams: int


@dataclass(frozen=True)
class DemoListing:
    sku: str
    product_name: str
    category: str
    brand: str | None
    variety: str
    grade: str
    price_per_kg: int  # fen per kg
    min_order_g: int
    step_g: int
    description: str
    lots: list[DemoLot] = field(default_factory=list)


@dataclass(frozen=True)
class DemoFarm:
    owner_email: str
    name: str
    village: str
    county: str
    province: str
    contact_phone: str
    description: str
    listings: list[DemoListing]


FARMS = [
    DemoFarm(
        owner_email="liu.orchard@farm-market.test",
        name="刘家脐橙园",
        village="上车村",
        county="寻乌县",
        province="江西省",
        contact_phone="+86 797 000 0101",
        description="吉潭镇上车村的家庭果园，种纽荷尔脐橙三十亩，山地果园，树上挂熟后采摘。",
        listings=[
            DemoListing(
                sku="XW-NAVEL-80",
                product_name="赣南脐橙 精品果",
                category="citrus",
                brand="gannan-navel-orange",
                variety="纽荷尔 Newhall",
                grade="特级 80-85mm",
                price_per_kg=1200,
                min_order_g=5000,
                step_g=2500,
                description="果径 80-85mm，皮薄多汁，采后 48 小时内发出。",
                lots=[
                    DemoLot("SC-2026-1110", date(2026, 11, 10), "上车村后山 2 号地", "特级", 400_000),
                    DemoLot("SC-2026-1118", date(2026, 11, 18), "上车村后山 3 号地", "特级", 600_000),
                ],
            ),
            DemoListing(
                sku="XW-NAVEL-70",
                product_name="赣南脐橙 家庭装",
                category="citrus",
                brand="gannan-navel-orange",
                variety="纽荷尔 Newhall",
                grade="一级 70-75mm",
                price_per_kg=800,
                min_order_g=5000,
                step_g=5000,
                description="个头略小，口味一样，适合家庭和单位团购。",
                lots=[DemoLot("SC-2026-1112", date(2026, 11, 12), "上车村河边地", "一级", 800_000)],
            ),
        ],
    ),
    DemoFarm(
        owner_email="zhao.chestnut@farm-market.test",
        name="赵家板栗园",
        village="五指山村",
        county="青龙满族自治县",
        province="河北省",
        contact_phone="+86 335 000 0202",
        description="肖营子镇五指山村的老栗树园，树龄多在百年以上，不打催熟药，自然落果。",
        listings=[
            DemoListing(
                sku="QL-CHESTNUT-A",
                product_name="青龙板栗",
                category="nuts",
                brand="qinglong-chestnut",
                variety="燕山早丰",
                grade="一级 每斤 60-70 粒",
                price_per_kg=2400,
                min_order_g=1000,
                step_g=500,
                description="燕山板栗，糯甜，冷库保鲜，顺丰冷链发出。",
                lots=[DemoLot("WZS-2026-0918", date(2026, 9, 18), "五指山村北坡老栗园", "一级", 300_000)],
            ),
        ],
    ),
    DemoFarm(
        owner_email="peng.tea@farm-market.test",
        name="彭家莓茶园",
        village="毛坝村",
        county="永顺县",
        province="湖南省",
        contact_phone="+86 743 000 0303",
        description="毛坝乡毛坝村的仿野生莓茶园，手工采摘芽尖，土家传统杀青工艺。",
        listings=[
            DemoListing(
                sku="YS-MEICHA-BUD",
                product_name="永顺莓茶 芽尖",
                category="tea",
                brand="yongshun-berry-tea",
                variety="显齿蛇葡萄",
                grade="特级 芽尖",
                price_per_kg=32000,
                min_order_g=250,
                step_g=250,
                description="春季头采芽尖，白霜明显，冲泡回甘。",
                lots=[
                    DemoLot("MB-2026-0428", date(2026, 4, 28), "毛坝村仿野生茶园", "特级", 40_000),
                    DemoLot("MB-2026-0812", date(2026, 8, 12), "毛坝村仿野生茶园", "特级", 25_000),
                ],
            ),
        ],
    ),
]


def _user(email: str) -> User:
    return db.session.scalars(select(User).where(User.email == email)).one()


def _actor(user: User) -> Actor:
    return Actor(user_id=user.id, roles=user.role_names)


def _vocabularies(operator: Actor) -> None:
    for code, name_zh, name_en in CATEGORIES:
        if db.session.scalar(select(Category.id).where(Category.code == code)) is None:
            catalog.create_category(operator, code=code, name_zh=name_zh, name_en=name_en)
    for code, name_zh, name_en, counties in BRANDS:
        if db.session.scalar(select(Brand.id).where(Brand.code == code)) is None:
            catalog.create_brand(operator, code=code, name_zh=name_zh, name_en=name_en, counties=counties)


def _point(operator: Actor, kind: FulfilmentPointKind, place: tuple[Any, ...], parent_id: int | None) -> int:
    name, village, county, province, address = place
    existing = db.session.scalar(select(FulfilmentPoint.id).where(FulfilmentPoint.name == name))
    if existing is not None:
        return existing
    point = catalog.create_fulfilment_point(
        operator,
        kind=kind,
        parent_id=parent_id,
        name=name,
        village=village,
        county=county,
        province=province,
        address=address,
        opening_hours=OPENING_HOURS[kind],
    )
    return point.id


def _fulfilment_points(operator: Actor) -> None:
    for centre, stations in POINTS:
        centre_id = _point(operator, FulfilmentPointKind.COUNTY_CENTRE, centre, None)
        for station in stations:
            _point(operator, FulfilmentPointKind.VILLAGE_STATION, station, centre_id)


def _listing(farmer: Actor, farm: Farm, demo: DemoListing) -> None:
    listing = db.session.scalar(select(Listing).where(Listing.farm_id == farm.id, Listing.sku == demo.sku))
    is_new = listing is None
    if listing is None:
        listing = catalog.create_listing(
            farmer,
            farm_id=farm.id,
            sku=demo.sku,
            product_name=demo.product_name,
            category=demo.category,
            brand=demo.brand,
            variety=demo.variety,
            grade=demo.grade,
            price_per_kg=demo.price_per_kg,
            min_order_g=demo.min_order_g,
            step_g=demo.step_g,
            description=demo.description,
        )
    for lot in demo.lots:
        if db.session.scalar(select(Lot.id).where(Lot.farm_id == farm.id, Lot.code == lot.code)) is None:
            catalog.add_lot(
                farmer,
                listing.id,
                code=lot.code,
                harvest_date=lot.harvest_date,
                plot=lot.plot,
                grade=lot.grade,
                grams=lot.grams,
            )
    if is_new:
        catalog.activate_listing(farmer, listing.id)


def _farms(operator: Actor) -> None:
    for demo in FARMS:
        owner = _user(demo.owner_email)
        farmer = _actor(owner)
        farm = db.session.scalar(select(Farm).where(Farm.owner_id == owner.id, Farm.name == demo.name))
        if farm is None:
            farm = catalog.create_farm(
                farmer,
                name=demo.name,
                village=demo.village,
                county=demo.county,
                province=demo.province,
                contact_name=owner.name,
                contact_phone=demo.contact_phone,
                description=demo.description,
            )
            catalog.verify_farm(operator, farm.id)
        for listing in demo.listings:
            _listing(farmer, farm, listing)


def _texted_code(order_id: int) -> str:
    """The confirmation code the villager got, read off their text message as they would."""
    body = db.session.scalars(
        select(Notification.body)
        .where(Notification.occurrence.like(f"order-{order_id}-code-%"))
        .order_by(Notification.id.desc())
    ).first()
    assert body is not None
    return str(next(word for word in re.findall(r"\d+", body) if len(word) == 6))


def _assisted_orders() -> None:
    """At STATION, staff place orders for villagers (once): each confirmed
    with the code texted to the villager and packed by the farm; the first
    is shipped, received, collected and paid in cash, and the day's cash-up
    is submitted with the cash counted."""
    staff_user = _user(STAFF_EMAIL)
    staff = _actor(staff_user)
    point_id = db.session.scalars(select(FulfilmentPoint.id).where(FulfilmentPoint.name == STATION)).one()
    if db.session.scalar(select(StationStaff.id).where(StationStaff.user_id == staff.user_id)) is None:
        db.session.add(StationStaff(user_id=staff.user_id, fulfilment_point_id=point_id))
        db.session.commit()
    if db.session.scalar(select(Order.id).where(Order.placed_by_id == staff.user_id).limit(1)) is not None:
        return
    oranges = db.session.scalars(select(Listing).where(Listing.sku == "XW-NAVEL-80")).one()
    farmer = _actor(_user(next(farm.owner_email for farm in FARMS if farm.listings[0].sku == oranges.sku)))
    for index, (name, phone, grams) in enumerate(VILLAGERS):
        placed = station_orders.place_for_villager(
            staff, point_id, phone=phone, name=name, lines=[LineRequest(oranges.id, grams)]
        )
        station_orders.confirm_for_villager(staff, placed.id, _texted_code(placed.id))
        order = db.session.get(Order, placed.id)
        assert order is not None
        part = order.parts[0]
        weighed = [Weighing(line.id, line.ordered_g - 40) for line in part.lines]
        orders.pack_part(farmer, order.id, part.id, weighed)
        if index:
            continue
        orders.ship_part(farmer, order.id, part.id)
        orders.receive_part(staff, order.id, part.id)
        ready = db.session.get(Order, placed.id)
        assert ready is not None
        assert ready.pickup_code is not None
        station_orders.collect_with_cash(staff, ready.id, code=ready.pickup_code, amount=ready.total)
    expected = cashups.preview(staff, point_id)["expected"]
    cashups.record(staff, point_id, business_day=None, expected=expected, counted=expected, note="演示：当日现金已清点")


def _sellers(operator: Actor) -> None:
    """STATION earns a fixed amount per order collected there and the host
    basis points of what she sells, both with bank details for payout runs
    (once)."""
    if db.session.scalar(select(Seller.id).limit(1)) is not None:
        return
    point_id = db.session.scalars(select(FulfilmentPoint.id).where(FulfilmentPoint.name == STATION)).one()
    commissions.create_seller(
        operator, kind=SellerKind.STATION, name=STATION, fulfilment_point_id=point_id, per_order=100,
        account_holder=STATION, bank_name="江西农商银行 吉潭支行", account_number="6217 2100 0000 4321",
    )  # fmt: skip
    commissions.create_seller(
        operator, kind=SellerKind.HOST, name="小红直播间 Xiao Hong live", user_id=_user(HOST_EMAIL).id,
        code=HOST_CODE, rate_bp=200, account_holder="王小红", bank_name="中国农业银行 赣州分行",
        account_number="6228 4800 5555 0008 888",
    )  # fmt: skip


def _hosted_order(operator: Actor) -> None:
    """A buyer's order placed with the host's code for pickup at STATION:
    paid offline, packed and captured, so the host and the station have
    earned their commission; only where payments are offline (once)."""
    if db.session.scalar(select(Order.id).where(Order.notes == HOSTED_ORDER_NOTE)) is not None:
        return
    if gateway().provider != Provider.OFFLINE:
        return
    station = db.session.scalars(select(FulfilmentPoint.id).where(FulfilmentPoint.name == STATION)).one()
    oranges = db.session.scalars(select(Listing).where(Listing.sku == "XW-NAVEL-80")).one()
    farmer = _actor(_user(next(farm.owner_email for farm in FARMS if farm.listings[0].sku == oranges.sku)))
    buyer = _actor(_user(ACCOUNTS[1][0]))
    placed = orders.place_order(
        buyer, lines=[LineRequest(oranges.id, 10_000)], fulfilment_point_id=station, notes=HOSTED_ORDER_NOTE,
        attribution_code=HOST_CODE,
    )  # fmt: skip
    payments.open_payment(placed.id)
    payments.confirm_offline(operator, placed.id, amount=placed.order.max_total, reference=f"DEMO-ORDER-{placed.id}")
    part = orders.get_order(operator, placed.id).parts[0]
    orders.pack_part(farmer, placed.id, part.id, [Weighing(line.id, line.ordered_g + 120) for line in part.lines])
    payments.capture(placed.id)


# An order whose part goes through a county centre (docs/stations.md):
# Qinglong chestnuts for pickup at a Xunwu village station, received at the
# Xunwu county centre and waiting there to be dispatched.
ROUTED_ORDER_NOTE = "Demo: chestnuts from Qinglong, through the Xunwu county centre to 上车村"
ROUTED_FROM = ("zhao.chestnut@farm-market.test", "QL-CHESTNUT-A")
ROUTED_TO = ("吉潭镇上车村服务站", "寻乌县农村电商配送中心")


def _routed_order(operator: Actor) -> None:
    """Placed, paid offline, packed, shipped and scanned in at the centre by
    its staff, through the same services as the API; only where payments
    are offline (no Stripe key), as an operator confirms them."""
    if db.session.scalar(select(Order.id).where(Order.notes == ROUTED_ORDER_NOTE)) is not None:
        return
    if gateway().provider != Provider.OFFLINE:
        return
    station, centre = (
        db.session.scalars(select(FulfilmentPoint.id).where(FulfilmentPoint.name == name)).one() for name in ROUTED_TO
    )
    farmer = _actor(_user(ROUTED_FROM[0]))
    listing = db.session.scalars(select(Listing).where(Listing.sku == ROUTED_FROM[1])).one()
    buyer = _actor(_user(ACCOUNTS[1][0]))
    lines = [LineRequest(listing.id, 2 * listing.min_order_g)]
    placed = orders.place_order(buyer, lines=lines, fulfilment_point_id=station, notes=ROUTED_ORDER_NOTE)
    payments.open_payment(placed.id)
    payments.confirm_offline(operator, placed.id, amount=placed.order.max_total, reference=f"DEMO-ORDER-{placed.id}")
    part = orders.get_order(operator, placed.id).parts[0]
    weighings = [Weighing(line.id, line.ordered_g) for line in part.lines]
    orders.pack_part(farmer, placed.id, part.id, weighings)
    orders.ship_part(farmer, placed.id, part.id)
    staff = _user(CENTRE_STAFF_EMAIL)
    orders.grant_station_staff(operator, centre, staff.id)
    routing.receive_parts(_actor(staff), centre, [part.id])


def seed() -> dict[str, str]:
    """Create the demo accounts and catalogue if missing; return a new token per account."""
    tokens: dict[str, str] = {}
    for email, name, roles, language, phone in ACCOUNTS:
        user = _account(email, name, roles, language, phone)
        tokens[email] = accounts.issue_token(user.id, name="demo", ttl=TOKEN_TTL).secret
    operator = _actor(_user(ACCOUNTS[0][0]))
    _vocabularies(operator)
    _fulfilment_points(operator)
    _farms(operator)
    _sellers(operator)
    _assisted_orders()
    _routed_order(operator)
    _hosted_order(operator)
    return tokens
