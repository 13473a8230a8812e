"""The channels a notification leaves by, behind one `Notifier` interface.

Email goes over SMTP; SMS through an HTTP gateway (a JSON POST with an API
key). With no SMTP host or gateway configured, both are appended to a local
mailbox file in the instance folder, so the embedded mode shows what would
have been sent. `notifier_for` picks by config; tests point the real
implementations at a local SMTP server and a local HTTP receiver.
"""

from __future__ import annotations

import mailbox
import smtplib
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

import requests
from flask import current_app

from market.extensions import TransientError
from market.notifications.models import Channel
from market.text import one_line

_mailbox_lock = threading.Lock()


class PermanentFailure(Exception):
    """The channel refused the message for good (a bad address, say)."""


@dataclass(frozen=True)
class Message:
    recipient: str  # an email address or a phone number
    subject: str
    body: str
    # Derived from our notification id: lets the far side drop a repeat.
    idempotency_key: str


class Notifier(Protocol):
    def send(self, message: Message) -> None:
        """Send `message`; raise `TransientError` to retry later or
        `PermanentFailure` to give up."""


def _email(message: Message, sender: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.recipient
    # A subject is one header line: a line break in it (from a product's
    # name, say) makes the email library refuse the message, and it would
    # never leave. Whatever text reached it, it goes as one line.
    email["Subject"] = one_line(message.subject)
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(idstring=message.idempotency_key, domain="farm-market")
    email["X-Market-Notification"] = message.idempotency_key
    email.set_content(message.body)
    return email


class SmtpNotifier:
    def __init__(self, config: dict[str, Any]) -> None:
        self.host: str = config["SMTP_HOST"]
        self.port: int = config["SMTP_PORT"]
        self.user: str = config["SMTP_USER"]
        self.password: str = config["SMTP_PASSWORD"]
        self.sender: str = config["SMTP_FROM"]
        self.tls: bool = config["SMTP_TLS"]
        self.timeout: int = config["WEBHOOK_TIMEOUT_SECONDS"]

    def send(self, message: Message) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.tls:
                    smtp.starttls()
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(_email(message, self.sender))
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(f"recipient refused: {exc.recipients}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}"[:500]) from exc


class SmsGatewayNotifier:
    def __init__(self, config: dict[str, Any]) -> None:
        self.url: str = config["SMS_GATEWAY_URL"]
        self.api_key: str = config["SMS_API_KEY"]
        self.timeout: int = config["WEBHOOK_TIMEOUT_SECONDS"]

    def send(self, message: Message) -> None:
        try:
            response = requests.post(
                self.url,
                json={"to": message.recipient, "text": message.body, "reference": message.idempotency_key},
                headers={"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": message.idempotency_key},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}"[:500]) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"SMS gateway answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentFailure(f"SMS gateway refused: {response.status_code} {response.text[:300]}")


class MailboxNotifier:
    """Appends each message to a local mbox file (the embedded default)."""

    def __init__(self, path: Path, channel: Channel, sender: str) -> None:
        self.path = path
        self.channel = channel
        self.sender = sender

    def send(self, message: Message) -> None:
        email = _email(message, self.sender)
        email["X-Market-Channel"] = self.channel.value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _mailbox_lock:
            box = mailbox.mbox(self.path)
            try:
                _lock_waiting(box)
                try:
                    box.add(email)
                    box.flush()
                finally:
                    box.unlock()
            finally:
                box.close()


# How long a process waits for another's lock on the mbox before the
# notification is tried again later.
MAILBOX_LOCK_SECONDS = 10.0


def _lock_waiting(box: mailbox.mbox) -> None:
    """Lock `box`, waiting while another process holds it: mailbox's own
    lock (lockf and a dot file) does not wait, and the embedded mode's
    worker appends from two pool processes."""
    deadline = time.monotonic() + MAILBOX_LOCK_SECONDS
    while True:
        try:
            box.lock()
            return
        except mailbox.ExternalClashError as exc:
            if time.monotonic() > deadline:
                raise TransientError(f"the mailbox stayed locked: {exc}") from exc
            time.sleep(0.01)


def notifier_for(channel: Channel) -> Notifier:
    config = current_app.config
    mailbox_path = Path(config["NOTIFICATION_MAILBOX"])
    if channel == Channel.EMAIL:
        return (
            SmtpNotifier(config) if config["SMTP_HOST"] else MailboxNotifier(mailbox_path, channel, config["SMTP_FROM"])
        )
    return (
        SmsGatewayNotifier(config)
        if config["SMS_GATEWAY_URL"]
        else MailboxNotifier(mailbox_path, channel, config["SMTP_FROM"])
    )
