"""Who may use the inbox: the users file, password hashes, sessions, CSRF tokens, login limits.

The users file is YAML::

    users:
      alice: {password_hash: "$2b$12$...", role: lead}
      bob: {password_hash: "$2b$12$...", role: agent}

Hashes are bcrypt (``brand-listener inbox --hash-password`` prints one). A
session is a signed cookie (HMAC-SHA256 over the user, role, session id and
expiry with the inbox secret), so every replica that shares the secret accepts
it. The CSRF token of a session is an HMAC of its session id: every POST must
carry it. In proxy-header mode a trusted reverse proxy names the user in a
header instead (off by default; roles still come from the users file).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import orjson
import yaml

from agents.queue.actions import Role

SESSION_S = 12 * 3600.0
"""How long a login lasts."""
_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=4))


@dataclass(frozen=True)
class User:
    """A person who may log in."""

    name: str
    role: Role
    password_hash: bytes = b""


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash of ``password`` for the users file."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def load_users(path: Path) -> dict[str, User]:
    """The users of a users file.

    Raises:
        ValueError: The file is not a ``users:`` mapping of name to hash and role.
    """
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    raw = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a 'users:' mapping")
    users: dict[str, User] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: user {name!r} must be a mapping")
        role = entry.get("role", "agent")
        if role not in ("agent", "lead"):
            raise ValueError(f"{path}: user {name!r} has role {role!r} (agent or lead)")
        digest = str(entry.get("password_hash") or "")
        if digest and not digest.startswith("$2"):
            raise ValueError(f"{path}: user {name!r}: password_hash is not a bcrypt hash")
        users[str(name)] = User(str(name), role, digest.encode("ascii"))
    return users


def check_password(users: dict[str, User], name: str, password: str) -> User | None:
    """The user if ``password`` is theirs; a missing user costs the same hash check."""
    user = users.get(name)
    digest = user.password_hash if user and user.password_hash else _DUMMY_HASH
    ok = bcrypt.checkpw(password.encode("utf-8"), digest)
    return user if ok and user is not None and user.password_hash else None


class LoginLimiter:
    """At most ``attempts`` failed logins per user name and per client in ``window_s`` seconds.

    Args:
        attempts: Failures allowed in the window.
        window_s: The sliding window.
        clock: Monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        attempts: int = 5,
        window_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempts, self.window_s, self._clock = attempts, window_s, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        cutoff = self._clock() - self.window_s
        while failures and failures[0] < cutoff:
            failures.popleft()
        return failures

    def allowed(self, name: str, client: str) -> bool:
        """Whether another attempt may be checked now."""
        keys = (f"user:{name}", f"client:{client}")
        return all(len(self._recent(k)) < self.attempts for k in keys)

    def failed(self, name: str, client: str) -> None:
        """Count a failed attempt."""
        for key in (f"user:{name}", f"client:{client}"):
            self._recent(key).append(self._clock())
        if len(self._failures) > 10_000:  # bound memory under a spray of names
            self._failures = {k: v for k, v in self._failures.items() if self._recent(k)}

    def succeeded(self, name: str) -> None:
        """Forget a user's failures after a good login."""
        self._failures.pop(f"user:{name}", None)


@dataclass(frozen=True)
class Session:
    """A logged-in person: who, with what role, and the session id the CSRF token derives from."""

    user: str
    role: Role
    sid: str
    expires: float


class Sessions:
    """Signs and checks session cookies and CSRF tokens with one secret.

    Args:
        secret: The signing key (shared by replicas).
        clock: Wall-clock seconds (injected in tests).
    """

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the inbox secret must be at least 16 bytes")
        self._secret, self._clock = secret, clock

    def _mac(self, purpose: str, data: bytes) -> str:
        digest = hmac.new(self._secret, purpose.encode() + b"\0" + data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, user: User, lifetime_s: float = SESSION_S) -> str:
        """A cookie value for a new session of ``user``."""
        body: dict[str, Any] = {
            "u": user.name,
            "r": user.role,
            "s": secrets.token_urlsafe(16),
            "e": self._clock() + lifetime_s,
        }
        data = base64.urlsafe_b64encode(orjson.dumps(body)).decode().rstrip("=")
        return f"{data}.{self._mac('session', data.encode())}"

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie value, or None if it is forged, garbled or expired."""
        if not cookie or "." not in cookie:
            return None
        data, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("session", data.encode())):
            return None
        try:
            body = orjson.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
            session = Session(str(body["u"]), body["r"], str(body["s"]), float(body["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.role not in ("agent", "lead") or session.expires < self._clock():
            return None
        return session

    def csrf_token(self, sid: str) -> str:
        """The CSRF token every POST of session ``sid`` must carry."""
        return self._mac("csrf", sid.encode())

    def csrf_ok(self, sid: str, token: str | None) -> bool:
        """Whether ``token`` is the CSRF token of session ``sid``."""
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(sid))
