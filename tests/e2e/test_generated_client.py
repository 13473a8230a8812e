"""A Python client generated from the OpenAPI document (openapi-python-client)
drives a farmer's day against a live server, through nothing but the
functions the document's operationIds name: what a farmer's own software
would do. Generation must succeed without a warning: a part of the document
the generator cannot read is a part such a client would lack."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from flask.testing import FlaskClient

from market.accounts.models import Role
from market.payments import service as payments
from tests.factories import PASSWORD, FarmFactory, FulfilmentPointFactory, ListingFactory, token_for, user_with_token

PACKAGE = "farm_market_client"
SETTINGS = Path(__file__).with_name("client-generator.yaml")
GENERATION_SECONDS = 120
T = TypeVar("T")


class GeneratedClient:
    """The generated package: its operations by operationId, its models, its clients."""

    def __init__(self, package: ModuleType) -> None:
        self.package = package
        self.models = importlib.import_module(f"{package.__name__}.models")
        self.api_root = Path(package.__file__ or "").parent / "api"

    def operation(self, operation_id: str) -> Any:
        """The module of one operation (its `sync`, `sync_detailed`...), whatever tag it is filed under."""
        (path,) = self.api_root.glob(f"*/{operation_id}.py")
        return importlib.import_module(f"{self.package.__name__}.api.{path.parent.name}.{operation_id}")

    def client(self, base_url: str, token: str | None = None) -> Any:
        clients = importlib.import_module(f"{self.package.__name__}.client")
        if token is None:
            return clients.Client(base_url=base_url, raise_on_unexpected_status=True)
        return clients.AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)


@pytest.fixture
def generated(client: FlaskClient, tmp_path: Path) -> Iterator[GeneratedClient]:
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(client.get("/api/v1/openapi.json").json))
    command = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(document)]
    command += ["--output-path", str(tmp_path / PACKAGE), "--meta", "none", "--config", str(SETTINGS)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=GENERATION_SECONDS, check=False)  # noqa: S603
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "warning" not in said.lower(), said
    sys.path.insert(0, str(tmp_path))
    try:
        yield GeneratedClient(importlib.import_module(PACKAGE))
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def answered(result: object, model: type[T]) -> T:
    """The operation's parsed answer, which must be `model` (not a problem document)."""
    assert isinstance(result, model), getattr(result, "to_dict", lambda: result)()
    return result


def test_a_farmer_s_day_through_the_generated_client(live_server: str, generated: GeneratedClient) -> None:
    farm = FarmFactory()
    oranges = ListingFactory(farm=farm, sku="XW-NAVEL-80", price_per_kg=1200, stock_g=20_000)
    pomelos = ListingFactory(farm=farm, sku="XW-POMELO", product_name="Pomelo", price_per_kg=800, stock_g=10_000)
    ListingFactory(sku="SOMEONE-ELSES")  # another farm's: not in this farmer's list
    station = FulfilmentPointFactory()
    buyer, _ = user_with_token(Role.BUYER)
    operator, _ = user_with_token(Role.OPERATOR)
    models = generated.models
    op = generated.operation

    # The farmer logs in.
    issued = answered(
        op("log_in").sync(
            client=generated.client(live_server), body=models.Login(email=farm.owner.email, password=PASSWORD)
        ),
        models.IssuedToken,
    )
    farmer = generated.client(live_server, issued.token)
    me = answered(op("get_me").sync(client=farmer), models.User)
    assert "farmer" in me.roles

    # Their produce.
    listed = answered(op("list_listings").sync(client=farmer, farm_id=farm.id), models.ListingPage)
    assert {(listing.sku, listing.stock_g) for listing in listed.items} == {
        ("XW-NAVEL-80", 20_000),
        ("XW-POMELO", 10_000),
    }
    assert listed.next_cursor is None
    assert all(listing.status == models.ListingStatus.ACTIVE and listing.farm.id == farm.id for listing in listed.items)

    # This morning's harvest, counted by SKU.
    harvest = [
        models.StockItem(stock_g=50_000, sku="XW-NAVEL-80", farm_id=farm.id),
        models.StockItem(stock_g=30_000, sku="XW-POMELO", farm_id=farm.id),
    ]
    stocked = answered(
        op("set_stock").sync(client=farmer, body=models.StockUpdate(items=harvest)),
        models.StockResult,
    )
    assert {(listing.id, listing.stock_g) for listing in stocked.items} == {(oranges.id, 50_000), (pomelos.id, 30_000)}

    # A buyer orders, and pays cash at the station, which an operator confirms.
    lines = [
        models.LineRequest(listing_id=oranges.id, grams=2000),
        models.LineRequest(listing_id=pomelos.id, grams=1500),
    ]
    order_request = models.OrderCreate(lines=lines, fulfilment_point_id=station.id)
    shopper = generated.client(live_server, token_for(buyer))
    placed = answered(
        op("place_order").sync(client=shopper, body=order_request, idempotency_key="basket-7"), models.Order
    )
    # The buyer's app retried (a lost answer, say): the same order, not a second one.
    again = answered(
        op("place_order").sync(client=shopper, body=order_request, idempotency_key="basket-7"), models.Order
    )
    assert again.id == placed.id
    assert placed.status == models.OrderStatus.PENDING_PAYMENT
    assert placed.total == 2400 + 1200
    payments.open_payment(placed.id)  # what the payment worker does once the order is committed
    paid = answered(
        op("confirm_offline_payment").sync(
            client=generated.client(live_server, token_for(operator)),
            order_id=placed.id,
            body=models.OfflineConfirmation(amount=placed.max_total, reference="cash at the station"),
        ),
        models.Payment,
    )
    assert paid.status == models.PaymentStatus.AUTHORISED

    # The farmer sees it among their paid orders, their part to pack.
    orders = answered(
        op("list_orders").sync(client=farmer, farm_id=farm.id, status=models.ListOrdersStatus.PAID),
        models.OrderPage,
    )
    (order,) = orders.items
    assert order.id == placed.id
    (part,) = order.parts
    assert part.farm_id == farm.id
    assert part.status == models.OrderPartStatus.TO_PACK
    ordered = {line.listing_id: line for line in part.lines}
    assert {listing_id: line.ordered_g for listing_id, line in ordered.items()} == {oranges.id: 2000, pomelos.id: 1500}

    # And packs it: the scales say a little more oranges, a little fewer pomelos.
    weighed = [
        models.Weighing(line_id=ordered[oranges.id].id, weighed_g=2100),
        models.Weighing(line_id=ordered[pomelos.id].id, weighed_g=1400),
    ]
    packed = answered(
        op("pack_part").sync(client=farmer, order_id=order.id, part_id=part.id, body=models.Pack(weights=weighed)),
        models.Order,
    )
    assert packed.status == models.OrderStatus.PACKED
    (packed_part,) = packed.parts
    assert packed_part.status == models.OrderPartStatus.PACKED
    assert {line.listing_id: (line.weighed_g, line.amount) for line in packed_part.lines} == {
        oranges.id: (2100, 2520),
        pomelos.id: (1400, 1120),
    }
    assert packed_part.subtotal == 2520 + 1120
    assert packed.total is None  # the buyer's; a farm sees its own part's money only

    # What the scales took and gave back shows in the farmer's stock.
    after = answered(op("list_listings").sync(client=farmer, farm_id=farm.id), models.ListingPage)
    assert {(listing.sku, listing.stock_g) for listing in after.items} == {
        ("XW-NAVEL-80", 50_000 - 2100),
        ("XW-POMELO", 30_000 - 1400),
    }
