"""The code that confirms an order placed for a villager."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from market.db import UTCDateTime
from market.extensions import db


class ConfirmationCode(db.Model):  # type: ignore[name-defined]
    """The one-time code texted to the villager an order was placed for.
    Only its keyed hash is kept; it expires, takes a limited number of
    wrong tries, and a new one (a resend) replaces it."""

    __tablename__ = "confirmation_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), unique=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent: Mapped[int] = mapped_column(Integer, default=1, server_default="1", doc="Codes sent for the order so far.")
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
