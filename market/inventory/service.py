"""Keeping one stock with the farmer's other sales channels.

- Push: every stock change of a listing with a SKU is queued for each of its
  farm's push channels as (stock, version); versions rise by one per change
  and channel, and a push sends only the latest stock per listing, so a
  channel that was down gets one message with the current state, and a
  receiver drops any version lower than one it already has. A listing
  given another SKU (or none) is pushed under the SKU it had with no stock,
  as an archived listing is, under a version above every earlier push of
  it, then under its new SKU with its stock.
- Pull: a channel's feed is read on a schedule; the drop in a SKU's quantity
  since the previous feed is a sale here too, a rise is a return. A
  listing given another SKU starts a new baseline from the feed's next
  quantity for it, never a move from its old SKU's.
- Events: a channel reports sales and returns under its own event ids, each
  applied exactly once.

Sales take stock with the catalog's conditional update, so stock never goes
below zero; a sale larger than the stock is refused, the farmer told, and
(for a feed) tried again at the next read rather than lost. An archived
listing is sold on no channel: a sale of it is refused as such, never as
one beyond its stock. Returns are new stock, by event or by feed alike:
refused for an archived listing and past the most a listing holds (for a
feed, tried again at the next read).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from market.accounts.models import Role
from market.auth import Actor
from market.catalog import service as catalog
from market.catalog.models import Farm, Listing, ListingStatus
from market.db import insert_if_absent, locked, outside_transaction, unit_of_work, utcnow
from market.errors import Conflict, Invalid, InvalidTransition, NotFound
from market.events import publish
from market.extensions import TransientError, db
from market.inventory import feeds
from market.inventory.models import ChannelListing, FeedFormat, InboundEvent, MovementKind, SalesChannel
from market.notifications.outbound import UnsafeUrl, post_signed, require_quota, require_safe_url
from market.outbox import enqueue
from market.pagination import Page, SortKey, count_rows, keyset_page

PUSH_TASK = "inventory.push_channel"
PULL_TASK = "inventory.pull_channel"
ERROR_LENGTH = 2000
# Pushes to a failing channel back off up to this; they are never dropped.
MAX_PUSH_BACKOFF = timedelta(hours=1)


class SaleExceedsStock(Conflict):
    slug = "out-of-stock"
    title = "Sale exceeds stock"


@dataclass(frozen=True)
class CreatedChannel:
    channel: SalesChannel
    secret: str


# --- channels ------------------------------------------------------------------


def _own_farm(actor: Actor, farm_id: int) -> Farm:
    actor.require(Role.FARMER, Role.OPERATOR)
    farm = db.session.get(Farm, farm_id)
    if farm is None or not (actor.has(Role.OPERATOR) or farm.owner_id == actor.user_id):
        raise Invalid("No such farm of yours.", {"farm_id": [f"Farm {farm_id} is not one of yours."]})
    return farm


def _own_channel(actor: Actor, channel_id: int, *, field: str | None = None) -> SalesChannel:
    actor.require(Role.FARMER, Role.OPERATOR)
    channel = db.session.get(SalesChannel, channel_id)
    if channel is None or not (actor.has(Role.OPERATOR) or channel.farm.owner_id == actor.user_id):
        if field:
            raise Invalid("No such sales channel of yours.", {field: [f"Channel {channel_id} is not one of yours."]})
        raise NotFound(f"Sales channel {channel_id} not found.")
    return channel


def _check_urls(push_url: str | None, feed_url: str | None) -> None:
    if push_url:
        require_safe_url(push_url, "push_url")
    if feed_url:
        require_safe_url(feed_url, "feed_url")


def create_channel(
    actor: Actor,
    *,
    farm_id: int,
    name: str,
    push_url: str | None = None,
    feed_url: str | None = None,
    feed_format: FeedFormat = FeedFormat.JSON,
    pull_interval_seconds: int = 300,
) -> CreatedChannel:
    """Register a sales channel for one of the caller's farms; its listings
    are matched by SKU. The push signing secret is returned only here. The
    farm's owner has at most SALES_CHANNELS_PER_ACCOUNT channels over all
    their farms."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    with unit_of_work():
        farm = _own_farm(actor, farm_id)
        _check_urls(push_url, feed_url)
        owned = select(func.count(SalesChannel.id)).join(SalesChannel.farm).where(Farm.owner_id == farm.owner_id)
        require_quota(farm.owner_id, owned, "SALES_CHANNELS_PER_ACCOUNT", "sales channels")
        channel = SalesChannel(
            farm_id=farm.id,
            name=name,
            push_url=push_url,
            feed_url=feed_url,
            feed_format=feed_format,
            pull_interval_seconds=pull_interval_seconds,
            secret=secret,
            active=True,
            next_run_at=utcnow() if feed_url else None,
        )
        db.session.add(channel)
    return CreatedChannel(channel, secret)


def update_channel(actor: Actor, channel_id: int, **changes: Any) -> SalesChannel:
    with unit_of_work():
        channel = _own_channel(actor, channel_id)
        _check_urls(changes.get("push_url"), changes.get("feed_url"))
        if changes.get("feed_url") and changes["feed_url"] != channel.feed_url:
            # Another feed: its quantities start a new baseline.
            channel.feed_etag = channel.feed_last_modified = None
            db.session.execute(
                update(ChannelListing).where(ChannelListing.channel_id == channel.id).values(reported_g=None)
            )
        for name, value in changes.items():
            setattr(channel, name, value)
        if channel.feed_url and channel.next_run_at is None:
            channel.next_run_at = utcnow()
    return channel


def delete_channel(actor: Actor, channel_id: int) -> None:
    with unit_of_work():
        db.session.delete(_own_channel(actor, channel_id))


def get_channel(actor: Actor, channel_id: int) -> SalesChannel:
    return _own_channel(actor, channel_id)


def get_event(actor: Actor, channel_id: int, recorded_id: int) -> InboundEvent:
    """One sale or return recorded on one of the caller's channels."""
    channel = _own_channel(actor, channel_id)
    event = db.session.get(InboundEvent, recorded_id)
    if event is None or event.channel_id != channel.id:
        raise NotFound(f"Event {recorded_id} not found on sales channel {channel_id}.")
    return event


def _channels(actor: Actor, *, farm_id: int | None = None, in_error: bool | None = None) -> Select[tuple[SalesChannel]]:
    actor.require(Role.FARMER, Role.OPERATOR)
    stmt = select(SalesChannel).join(SalesChannel.farm)
    if not actor.has(Role.OPERATOR):
        stmt = stmt.where(Farm.owner_id == actor.user_id)
    if farm_id is not None:
        stmt = stmt.where(SalesChannel.farm_id == farm_id)
    if in_error is not None:
        # In error: an active channel whose last sync failed (a success clears the error).
        failing = SalesChannel.active.is_(True) & SalesChannel.last_error.isnot(None)
        stmt = stmt.where(failing if in_error else ~failing)
    return stmt


def list_channels(
    actor: Actor, *, limit: int, cursor: str | None = None, farm_id: int | None = None, in_error: bool | None = None
) -> Page[SalesChannel]:
    """The caller's channels with their sync state; operators see all.
    `in_error`: only the active channels whose last sync failed (or only the others)."""
    stmt = _channels(actor, farm_id=farm_id, in_error=in_error).options(selectinload(SalesChannel.farm))
    return keyset_page(stmt, [SortKey(SalesChannel.id, "id")], limit=limit, cursor=cursor)


def count_channels(actor: Actor, *, farm_id: int | None = None, in_error: bool | None = None) -> int:
    """How many channels `list_channels` lists, over all its pages."""
    return count_rows(_channels(actor, farm_id=farm_id, in_error=in_error))


def _succeeded(channel: SalesChannel) -> None:
    channel.last_success_at = utcnow()
    channel.last_error = None


def _failed(channel: SalesChannel, error: str) -> None:
    channel.last_error = error[:ERROR_LENGTH]
    channel.last_error_at = utcnow()


def _state(channel_id: int, listing_id: int) -> ChannelListing:
    """The channel's row for a listing, created on first use (by whichever
    of two concurrent callers comes first)."""
    insert_if_absent(
        ChannelListing,
        ["channel_id", "listing_id"],
        {"channel_id": channel_id, "listing_id": listing_id, "push_version": 0, "pushed_version": 0},
    )
    return db.session.scalars(
        select(ChannelListing).where(ChannelListing.channel_id == channel_id, ChannelListing.listing_id == listing_id)
    ).one()


# --- push ----------------------------------------------------------------------------


def queue_push(listing_id: int) -> int:
    """After a stock change (or the listing archived, or given another
    SKU): record the listing's current stock, 0 once archived, under the
    next version for each push channel of its farm and queue the pushes.
    A SKU the channel was pushed before and the listing no longer has is
    recorded too, with no stock, under a version just below: the channel
    stops selling it before it sells the new one. Returns how many
    channels were queued."""
    with unit_of_work():
        listing = db.session.get(Listing, listing_id)
        if listing is None:
            return 0
        push_channels = select(SalesChannel.id).where(
            SalesChannel.farm_id == listing.farm_id, SalesChannel.push_url.isnot(None), SalesChannel.active
        )
        if listing.sku is None:
            # Sold under no SKU: only a channel pushed an earlier one is told.
            push_channels = push_channels.where(
                exists().where(
                    ChannelListing.channel_id == SalesChannel.id,
                    ChannelListing.listing_id == listing_id,
                    ChannelListing.push_sku.isnot(None),
                )
            )
        channels = db.session.scalars(push_channels).all()
        for channel_id in channels:
            state = _state(channel_id, listing_id)
            # Take the row lock first, then read the stock and SKU: a later
            # change's push waits for this one and so reads a stock at
            # least as new, under a higher version.
            db.session.execute(
                update(ChannelListing)
                .where(ChannelListing.id == state.id)
                .values(push_version=ChannelListing.push_version + 1)
            )
            db.session.refresh(state)
            stock, status, sku = db.session.execute(
                select(Listing.stock_g, Listing.status, Listing.sku).where(Listing.id == listing_id)
            ).one()
            retired = dict(state.retired_skus or {})
            if state.push_sku is not None and state.push_sku != sku:
                # Sold no more under the SKU the channel was pushed: no stock
                # there, under this version, and the new SKU under the next.
                retired[state.push_sku] = state.push_version
                if sku is not None:
                    state.push_version += 1
            if sku is not None:
                retired.pop(sku, None)  # its own again: pushed with its stock
            state.push_sku = sku
            state.retired_skus = retired or None
            # An archived listing is sold on no channel, whatever grams it
            # still holds (an order closing may give some back to it).
            state.push_stock_g = 0 if status == ListingStatus.ARCHIVED else stock
            enqueue(PUSH_TASK, channel_id=channel_id)
    return len(channels)


def _push_items(state: ChannelListing) -> list[dict[str, Any]]:
    """What a push says of one listing, in version order: no stock under
    each SKU it no longer has, then its stock under its SKU."""
    retired = sorted((version, sku) for sku, version in (state.retired_skus or {}).items())
    items = [{"sku": sku, "listing_id": state.listing_id, "stock_g": 0, "version": v} for v, sku in retired]
    if state.push_sku is not None:
        items.append(
            {
                "sku": state.push_sku,
                "listing_id": state.listing_id,
                "stock_g": state.push_stock_g,
                "version": state.push_version,
            }
        )
    return items


def push_channel(channel_id: int) -> int:
    """Send a channel the latest stock of every listing changed since its
    last acknowledged push, in one signed POST. Returns how many listings
    were sent; a failure is recorded on the channel and retried by
    `run_due` with backoff."""
    with unit_of_work():
        channel = db.session.get(SalesChannel, channel_id)
        if channel is None or not channel.push_url or not channel.active:
            return 0
        pending = db.session.scalars(
            select(ChannelListing)
            .where(ChannelListing.channel_id == channel.id, ChannelListing.push_version > ChannelListing.pushed_version)
            .order_by(ChannelListing.listing_id)
        ).all()
        if not pending:
            return 0
        items = [item for state in pending for item in _push_items(state)]
        versions = {s.id: s.push_version for s in pending}
        retiring = [s.id for s in pending if s.retired_skus]
        url, secret = channel.push_url, channel.secret
    body = json.dumps({"channel_id": channel_id, "items": items}, separators=(",", ":")).encode()
    key = "push-" + hashlib.sha256(body).hexdigest()[:32]
    status, error = 200, None
    try:
        # Nothing to say only for a listing without a SKU whose old one the
        # channel was told is gone: acknowledged without a call.
        if items:
            status = outside_transaction(lambda: post_signed(url, body, secret=secret, idempotency_key=key))
        if not 200 <= status < 300:
            # The status alone: what the channel wrote is not ours to show.
            error = f"Push answered HTTP {status}."
    except (UnsafeUrl, TransientError) as exc:
        error = f"Push failed: {exc}"
    with unit_of_work():
        channel = _locked_channel(channel_id)
        if channel is None:  # deleted meanwhile
            return 0
        if error is not None:
            channel.push_failures += 1
            backoff = timedelta(
                seconds=current_app.config["INVENTORY_PUSH_RETRY_BASE_SECONDS"]
                * 2 ** min(channel.push_failures - 1, 16)
            )
            channel.push_retry_at = utcnow() + min(backoff, MAX_PUSH_BACKOFF)
            _failed(channel, error)
            return 0
        # Only ever upwards: a later push may have acknowledged more meanwhile.
        for state_id, version in versions.items():
            db.session.execute(
                update(ChannelListing)
                .where(ChannelListing.id == state_id, ChannelListing.pushed_version < version)
                .values(pushed_version=version)
            )
        for state in db.session.scalars(locked(select(ChannelListing).where(ChannelListing.id.in_(retiring)))):
            # A retired SKU acknowledged with no stock is not sent again; one
            # retired since (a higher version) still is.
            kept = {sku: v for sku, v in (state.retired_skus or {}).items() if v > state.pushed_version}
            state.retired_skus = kept or None
        channel.push_failures = 0
        channel.push_retry_at = None
        _succeeded(channel)
    return len({item["listing_id"] for item in items})


def _locked_channel(channel_id: int) -> SalesChannel | None:
    return db.session.scalars(locked(select(SalesChannel).where(SalesChannel.id == channel_id))).one_or_none()


# --- pull -----------------------------------------------------------------------------


def run_due(now: datetime | None = None) -> int:
    """The beat job: queue a read of every feed that is due and a retry of
    every push whose backoff has passed. Returns how many were queued."""
    with unit_of_work():
        now = now or utcnow()
        due_feeds = db.session.scalars(
            select(SalesChannel)
            .where(SalesChannel.active, SalesChannel.feed_url.isnot(None), SalesChannel.next_run_at <= now)
            .limit(500)
        ).all()
        for channel in due_feeds:
            channel.next_run_at = now + timedelta(seconds=channel.pull_interval_seconds)
            enqueue(PULL_TASK, channel_id=channel.id)
        unsent = exists().where(
            ChannelListing.channel_id == SalesChannel.id, ChannelListing.push_version > ChannelListing.pushed_version
        )
        due_pushes = db.session.scalars(
            select(SalesChannel.id).where(
                SalesChannel.active,
                SalesChannel.push_url.isnot(None),
                SalesChannel.push_retry_at <= now,
                unsent,
            )
        ).all()
        for channel_id in due_pushes:
            enqueue(PUSH_TASK, channel_id=channel_id)
    return len(due_feeds) + len(due_pushes)


def _listings_by_sku(farm_id: int, skus: list[str]) -> dict[str, Listing]:
    rows = db.session.scalars(select(Listing).where(Listing.farm_id == farm_id, Listing.sku.in_(skus)))
    return {listing.sku: listing for listing in rows if listing.sku}


def _refused(channel_id: int, listing_id: int, grams: int, available: int) -> None:
    publish("inventory.sale_refused", channel_id=channel_id, listing_id=listing_id, grams=grams, stock_g=available)


def _baseline(channel_id: int) -> dict[int, int]:
    """The quantities of the channel's feed applied last, by listing."""
    rows = db.session.execute(
        select(ChannelListing.listing_id, ChannelListing.reported_g).where(
            ChannelListing.channel_id == channel_id, ChannelListing.reported_g.isnot(None)
        )
    )
    return {listing_id: reported for listing_id, reported in rows}


def pull_channel(channel_id: int) -> int:
    """Read a channel's feed and apply the change in each SKU's quantity
    since the previous read as sales or returns here. Returns how many
    SKUs moved stock. Unknown SKUs and refused sales are recorded as the
    channel's sync error; the other rows still apply, and a refused sale's
    baseline is kept so the next read tries it again.

    The feed is read with no transaction open; a read that finds another
    one applied (or the feed replaced) while it fetched is dropped, as its
    quantities may be older, and the next read starts from what is stored."""
    with unit_of_work():
        channel = db.session.get(SalesChannel, channel_id)
        if channel is None or not channel.feed_url or not channel.active:
            return 0
        url, feed_format = channel.feed_url, channel.feed_format
        etag, last_modified = channel.feed_etag, channel.feed_last_modified
        baseline = _baseline(channel_id)
    try:
        fetched = outside_transaction(lambda: feeds.fetch(url, etag=etag, last_modified=last_modified))
        feed = None if fetched.body is None else feeds.parse(fetched.body, feed_format)
    except (feeds.FeedError, UnsafeUrl, TransientError) as exc:
        with unit_of_work():
            channel = _locked_channel(channel_id)
            if channel is not None and channel.feed_url == url:
                _failed(channel, f"Feed not applied: {exc}")
        return 0
    with unit_of_work():
        channel = _locked_channel(channel_id)
        if channel is None or channel.feed_url != url or not channel.active or _baseline(channel_id) != baseline:
            return 0
        if feed is None:
            _succeeded(channel)
            return 0
        return _apply_feed(channel, feed, etag=fetched.etag, last_modified=fetched.last_modified)


def _apply_feed(channel: SalesChannel, feed: feeds.Feed, *, etag: str | None, last_modified: str | None) -> int:
    quantities = feed.quantities
    listings = _listings_by_sku(channel.farm_id, list(quantities))
    problems = []
    unknown = sorted(feed.positions[sku] for sku in set(quantities) - set(listings))
    if unknown:
        # By position: an unknown SKU is the feed's text, not ours to repeat.
        shown = ", ".join(str(index) for index in unknown[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        problems.append(f"Unknown SKUs skipped at items {shown}{more}.")
    moved = 0
    kept = False  # a move refused, its baseline kept for the next read
    for sku in sorted(listings, key=lambda s: listings[s].id):
        listing, current = listings[sku], quantities[sku]
        state = _state(channel.id, listing.id)
        # A quantity reported under another SKU (the listing's SKU changed
        # since) says nothing of this one: the feed's is a new baseline.
        previous = state.reported_g if state.reported_sku == sku else None
        state.reported_g, state.reported_sku = current, sku
        if previous is None or previous == current:
            continue
        if previous > current:
            try:
                catalog.take_stock([catalog.StockLine(listing.id, previous - current)], purchasable_only=False)
            except catalog.OutOfStock as exc:
                state.reported_g, kept = previous, True
                available = exc.extra.get("available_g")
                if available is None:
                    problems.append(
                        f"SKU {sku}: a sale of {previous - current} g was refused: "
                        f"listing {listing.id} is {listing.status}."
                    )
                    continue
                told = f"SKU {sku}: a sale of "
                problems.append(f"{told}{previous - current} g exceeds the stock ({available} g).")
                # Told once while the refusal lasts: the last error names this
                # SKU's sale (a SKU has no spaces, so no other SKU's reads so).
                if channel.last_error is None or told not in channel.last_error:
                    _refused(channel.id, listing.id, previous - current, available)
                continue
        else:
            try:
                catalog.receive_stock([catalog.StockLine(listing.id, current - previous)])
            except (catalog.ListingArchived, Invalid) as exc:
                state.reported_g, kept = previous, True
                problems.append(f"SKU {sku}: a return of {current - previous} g was refused: {exc.detail}")
                continue
        moved += 1
    # A refused move is tried again at the next read, which must then read
    # the feed whole: sent the validators, an unchanged feed answers 304
    # and the move would wait for the feed's next change.
    channel.feed_etag, channel.feed_last_modified = (None, None) if kept else (etag, last_modified)
    if problems:
        _failed(channel, " ".join(problems))
        channel.last_success_at = utcnow()
    else:
        _succeeded(channel)
    return moved


# --- inbound events -----------------------------------------------------------------------


def _event_hash(kind: MovementKind, sku: str, grams: int) -> str:
    canonical = json.dumps({"type": kind.value, "sku": sku, "grams": grams}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _earlier(channel_id: int, event_id: str, request_hash: str) -> InboundEvent | None:
    earlier = db.session.scalars(
        select(InboundEvent).where(InboundEvent.channel_id == channel_id, InboundEvent.event_id == event_id)
    ).one_or_none()
    if earlier is not None and earlier.request_hash != request_hash:
        raise Invalid(
            f"Event {event_id!r} was already reported with different content.",
            {"event_id": ["Already used on this channel for another sale or return."]},
        )
    return earlier


def _refused_event(channel_id: int, error: str) -> bool:
    """Record why a channel's event was refused as the channel's sync error,
    in the transaction that follows the event's rollback. False when the
    channel was deleted meanwhile."""
    channel = _locked_channel(channel_id)
    if channel is None:
        return False
    _failed(channel, error)
    return True


def record_event(
    actor: Actor, *, channel_id: int, event_id: str, type: MovementKind, sku: str, grams: int
) -> tuple[InboundEvent, bool]:
    """Apply a sale or return a channel reports, once per (channel, event
    id). Returns the event and whether it was new; a repeat returns the
    first one. A sale larger than the stock is refused (409) and the farmer
    told; nothing is recorded, so the channel may send it again later. A
    sale or return of an archived listing is refused (409): it is sold
    nowhere and takes no new stock. Every refusal is the channel's sync
    error."""
    request_hash = _event_hash(type, sku, grams)
    try:
        with unit_of_work():
            channel = _own_channel(actor, channel_id, field="channel_id")
            earlier = _earlier(channel.id, event_id, request_hash)
            if earlier is not None:
                return earlier, False
            listing = _listings_by_sku(channel.farm_id, [sku]).get(sku)
            if listing is None:
                raise Invalid(
                    f"No listing with SKU {sku!r} on this farm.", {"sku": ["Unknown SKU for this channel's farm."]}
                )
            event = InboundEvent(
                channel_id=channel.id,
                event_id=event_id,
                request_hash=request_hash,
                kind=type,
                sku=sku,
                listing_id=listing.id,
                grams=grams,
                stock_after_g=0,
            )
            db.session.add(event)
            db.session.flush()
            listing_id = listing.id
            line = catalog.StockLine(listing_id, grams)
            if type == MovementKind.SALE:
                catalog.take_stock([line], purchasable_only=False)
            else:
                catalog.receive_stock([line])
            event.stock_after_g = db.session.scalar(select(Listing.stock_g).where(Listing.id == listing.id)) or 0
            _succeeded(channel)
        return event, True
    except IntegrityError:
        # The same event arrived concurrently and was recorded first.
        earlier = _earlier(channel_id, event_id, request_hash)
        if earlier is None:
            raise
        return earlier, False
    except catalog.ListingArchived:
        with unit_of_work():
            _refused_event(
                channel_id,
                f"Event {event_id}: a return of {grams} g of SKU {sku} was refused: listing {listing_id} is archived.",
            )
        raise catalog.ListingArchived(listing_id, "sku") from None
    except catalog.OutOfStock as exc:
        available = exc.extra.get("available_g")
        if available is None:  # not for sale on any channel: there is no stock to compare
            with unit_of_work():
                status = db.session.scalar(select(Listing.status).where(Listing.id == listing_id))
                _refused_event(
                    channel_id,
                    f"Event {event_id}: a sale of {grams} g of SKU {sku} was refused: "
                    f"listing {listing_id} is {status}.",
                )
            raise InvalidTransition(
                f"Listing {listing_id} (SKU {sku}) is {status}: it cannot be sold now; nothing was taken.",
                {"sku": [f"The listing is {status}; it cannot be sold now."]},
            ) from None
        with unit_of_work():
            error = f"Event {event_id}: a sale of {grams} g of SKU {sku} exceeds the stock ({available} g)."
            if _refused_event(channel_id, error):
                _refused(channel_id, listing_id, grams, available)
        raise SaleExceedsStock(
            f"The sale of {grams} g exceeds the stock of SKU {sku} ({available} g); nothing was taken.",
            {"grams": [f"Only {available} g in stock."]},
            available_g=available,
        ) from None
