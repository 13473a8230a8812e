"""Every model module, imported so the metadata (and Alembic) sees all tables."""

from market.accounts import models as accounts
from market.catalog import models as catalog
from market.commissions import models as commissions
from market.idempotency import IdempotencyKey
from market.inventory import models as inventory
from market.ledger import models as ledger
from market.notifications import models as notifications
from market.orders import models as orders
from market.outbox import OutboxMessage
from market.payments import models as payments
from market.payouts import models as payouts
from market.premiums import models as premiums
from market.reconciliation import models as reconciliation
from market.reports import models as reports
from market.stations import models as stations

__all__ = [
    "IdempotencyKey",
    "OutboxMessage",
    "accounts",
    "catalog",
    "commissions",
    "inventory",
    "ledger",
    "notifications",
    "orders",
    "payments",
    "payouts",
    "premiums",
    "reconciliation",
    "reports",
    "stations",
]
