"""Inbox auth: users file, bcrypt check, login rate limit, signed sessions, CSRF tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.inbox.auth import (
    LoginLimiter,
    Sessions,
    User,
    check_password,
    hash_password,
    load_users,
)


def test_users_file_and_password_check(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    digest = hash_password("s3cret pass", rounds=4)
    path.write_text(
        f"users:\n  ann: {{password_hash: '{digest}', role: lead}}\n"
        f"  bob: {{password_hash: '{digest}'}}\n  proxy-only: {{role: agent}}\n"
    )
    users = load_users(path)
    assert users["ann"].role == "lead" and users["bob"].role == "agent"
    assert check_password(users, "ann", "s3cret pass") == users["ann"]
    assert check_password(users, "ann", "wrong") is None
    assert check_password(users, "nobody", "s3cret pass") is None
    assert check_password(users, "proxy-only", "") is None  # no hash: no password login


@pytest.mark.parametrize(
    "text",
    [
        "users: []\n",
        "nothing: 1\n",
        "users:\n  ann: {password_hash: 'plain', role: agent}\n",
        "users:\n  ann: {password_hash: '$2b$04$x', role: admin}\n",
    ],
)
def test_bad_users_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(ValueError):
        load_users(path)


def test_login_limiter_per_user_and_per_client() -> None:
    now = [0.0]
    limiter = LoginLimiter(attempts=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.allowed("ann", "1.1.1.1")
        limiter.failed("ann", "1.1.1.1")
    assert not limiter.allowed("ann", "2.2.2.2")  # the user is locked from anywhere
    assert not limiter.allowed("bob", "1.1.1.1")  # and the client for any user
    assert limiter.allowed("bob", "2.2.2.2")
    now[0] = 61.0
    assert limiter.allowed("ann", "1.1.1.1")
    limiter.failed("ann", "1.1.1.1")
    limiter.succeeded("ann")
    assert limiter.allowed("ann", "3.3.3.3")


def test_sessions_are_signed_and_expire() -> None:
    now = [1000.0]
    sessions = Sessions(b"k" * 32, clock=lambda: now[0])
    cookie = sessions.issue(User("ann", "lead"), lifetime_s=60)
    session = sessions.read(cookie)
    assert session is not None and (session.user, session.role) == ("ann", "lead")
    data, _, mac = cookie.rpartition(".")
    assert sessions.read(data + "x." + mac) is None  # tampered body
    assert sessions.read(cookie[:-2]) is None  # tampered signature
    assert Sessions(b"o" * 32).read(cookie) is None  # another secret
    assert sessions.read(None) is None and sessions.read("garbage") is None
    now[0] += 61
    assert sessions.read(cookie) is None


def test_csrf_token_is_bound_to_the_session() -> None:
    sessions = Sessions(b"k" * 32)
    token = sessions.csrf_token("sid-1")
    assert sessions.csrf_ok("sid-1", token)
    assert not sessions.csrf_ok("sid-2", token)
    assert not sessions.csrf_ok("sid-1", None) and not sessions.csrf_ok("sid-1", "")
    with pytest.raises(ValueError):
        Sessions(b"short")
