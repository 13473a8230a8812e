"""Who is signed in to the console: a signed session cookie that names the
account, checked against the database on every request.

The cookie holds the user id and a fingerprint of the password hash, so a
password change ends every session signed in with the old one; the operator
role is read afresh each time, so revoking it closes the console at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, redirect, render_template, request, session, url_for

from market.accounts.models import Role, User
from market.auth import Actor
from market.extensions import db

F = TypeVar("F", bound=Callable[..., Any])
USER_KEY = "console_user"
CHECK_KEY = "console_check"


def _check(user: User) -> str:
    return hashlib.sha256(f"console:{user.id}:{user.password_hash}".encode()).hexdigest()[:32]


def start(user: User) -> None:
    """Begin a session for `user`: whatever the cookie held before is dropped."""
    session.clear()
    g.pop("csrf_token", None)  # the token of the session just dropped
    session.permanent = True
    session[USER_KEY] = user.id
    session[CHECK_KEY] = _check(user)


def end() -> None:
    session.clear()


def signed_in_user() -> User | None:
    """The account the session names, if it still exists with the same password."""
    user_id = session.get(USER_KEY)
    if not isinstance(user_id, int):
        return None
    user = db.session.get(User, user_id)
    if user is None or session.get(CHECK_KEY) != _check(user):
        return None
    return user


def operator() -> Actor:
    """The signed-in operator as the services take them (set by `operator_required`)."""
    actor: Actor = g.console_actor
    return actor


def operator_required(view: F) -> F:
    """Let the view run for a signed-in operator only; anyone else goes to
    the sign-in page (403 for a signed-in account without the role)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        user = signed_in_user()
        if user is None:
            end()
            return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
        g.console_language = user.language.value
        if Role.OPERATOR not in user.role_names:
            end()
            return render_template("console/message.html", message="operators_only"), 403
        g.console_user = user
        g.console_actor = Actor(user_id=user.id, roles=user.role_names)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]
