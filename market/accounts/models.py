from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from market.db import UTCDateTime, enum_column, utcnow
from market.extensions import db


class Role(StrEnum):
    FARMER = "farmer"
    BUYER = "buyer"
    OPERATOR = "operator"


class Language(StrEnum):
    ZH = "zh"
    EN = "en"


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # An account station staff opened for a villager by phone number has
    # neither address nor password until the villager claims it
    # (docs/stations.md); it cannot log in meanwhile.
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(32))
    # When the number was shown to be this account's: station staff opened
    # the account with the number the villager gave them in person, or a
    # code texted to it claimed the account. Only a proven number is
    # matched to a villager (docs/stations.md); changing the number clears
    # it, and an unproven number still gets SMS.
    phone_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    language: Mapped[Language] = mapped_column(enum_column(Language, "language"), default=Language.ZH)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    # When the owner of the address followed the link emailed at
    # registration; an account not confirmed cannot log in.
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    roles: Mapped[list[UserRole]] = relationship(back_populates="user", cascade="all, delete-orphan", lazy="selectin")
    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")

    @property
    def role_names(self) -> frozenset[Role]:
        return frozenset(r.role for r in self.roles)

    @property
    def phone_verified(self) -> bool:
        return self.phone is not None and self.phone_verified_at is not None

    def change_phone(self, phone: str | None) -> None:
        """Take a new number (None removes it); another number than the
        one held is unproven until shown to be this account's."""
        if phone != self.phone:
            self.phone = phone
            self.phone_verified_at = None

    def prove_phone(self) -> None:
        """The number held was shown, now, to be this account's."""
        self.phone_verified_at = utcnow()


class UserRole(db.Model):  # type: ignore[name-defined]
    __tablename__ = "user_roles"
    __table_args__ = (UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(enum_column(Role, "role"))

    user: Mapped[User] = relationship(back_populates="roles")


class ApiToken(db.Model):  # type: ignore[name-defined]
    """A bearer token. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship(back_populates="tokens")
