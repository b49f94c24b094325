"""Tokens and sessions.

A token is 32 random bytes (``secrets``) shown once; the project keeps only its SHA-256 (a token has
256 bits of entropy, so a fast hash is enough: there is nothing to brute-force). Signing in with a
token opens a session: a random id in an HttpOnly, SameSite=Strict cookie, held in memory (a restart
signs everyone out), with its own CSRF token that every state-changing request must send back in
the ``X-CSRF-Token`` header. The admin token is separate and opens an admin session, which cannot
annotate; an annotator session cannot open admin pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

SESSION_COOKIE = "cf_session"
LOGIN_COOKIE = "cf_login"  # the sign-in form's CSRF token (double submit: cookie and form field)
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600  # idle time after which a session ends
ADMIN = "admin"
ANNOTATOR = "annotator"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two secrets (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


@dataclass
class Session:
    role: str  # ADMIN or ANNOTATOR
    name: str  # the annotator's name ("admin" for the admin)
    csrf: str = field(default_factory=new_token)
    seen: float = field(default_factory=time.monotonic)


class Sessions:
    """Live sessions by the hash of their cookie value (a leaked memory dump shows no usable cookie)."""

    def __init__(self, ttl: float = SESSION_SECONDS):
        self.ttl = ttl
        self._by_hash: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, role: str, name: str) -> tuple[str, Session]:
        sid = new_token()
        session = Session(role, name)
        with self._lock:
            self._expire()
            self._by_hash[token_hash(sid)] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_hash.get(token_hash(sid))
            now = time.monotonic()
            if session is None or now - session.seen > self.ttl:
                return None
            session.seen = now
            return session

    def close(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_hash.pop(token_hash(sid), None)

    def close_for(self, role: str, name: str) -> None:
        """End every session of one person (their token was replaced)."""
        with self._lock:
            for key in [k for k, s in self._by_hash.items() if s.role == role and s.name == name]:
                del self._by_hash[key]

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._by_hash.items() if now - s.seen > self.ttl]:
            del self._by_hash[key]
