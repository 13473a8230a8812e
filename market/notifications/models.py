"""The notification log, per-user channel preferences, and API clients'
webhook endpoints with their delivery log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.db import UTCDateTime, enum_column
from market.extensions import db


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Notification(db.Model):  # type: ignore[name-defined]
    """One message to one user on one channel, written in the transaction
    that handled the event and sent by its own task.

    `occurrence` names the event occurrence (the outbox message that carried
    it), so handling the same occurrence twice adds no second row.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("occurrence", "user_id", "channel"),
        Index("ix_notifications_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurrence: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "notification_channel"))
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        enum_column(DeliveryStatus, "notification_status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    # When the next try is due; the sweep re-queues pending rows long past it.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set while a worker sends it (with no row lock held), so another one
    # does not send it too; a claim older than the service's SEND_LEASE is
    # a worker that died.
    sending_since: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NotificationPreference(db.Model):  # type: ignore[name-defined]
    """A user's choice of channels for one event; absent means the default."""

    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("user_id", "event"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)


class WebhookEndpoint(db.Model):  # type: ignore[name-defined]
    """An API client's URL that receives signed events. The secret signs
    deliveries, so it is kept as is; the API shows it only on creation."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(500))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(80))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    deliveries: Mapped[list[WebhookDelivery]] = relationship(back_populates="endpoint", cascade="all, delete-orphan")

    def wants(self, event: str) -> bool:
        return self.active and event in self.event_types


class WebhookDelivery(db.Model):  # type: ignore[name-defined]
    """One event sent (or being sent) to one endpoint: the delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("occurrence", "endpoint_id"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurrence: Mapped[str] = mapped_column(String(80))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    # The exact bytes signed and sent, so a redelivery sends the same body.
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        enum_column(DeliveryStatus, "webhook_delivery_status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now(), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # As for a notification: set while a worker posts it.
    sending_since: Mapped[datetime | None] = mapped_column(UTCDateTime())

    endpoint: Mapped[WebhookEndpoint] = relationship(back_populates="deliveries")
