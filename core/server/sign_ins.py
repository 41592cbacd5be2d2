"""Sign-ins that survive a reload of the page: a server-side store keyed by a token the browser holds.

A reload starts a new Streamlit session with empty state, which would sign the user out and
lose their result. Instead, a session that signs in (or opens an open app) gets a token:
32 random bytes, URL-safe (``secrets.token_urlsafe``), handed to its own browser tab only
(``widgets/browser_token``: kept in the page's memory and written into a short-lived cookie
just as the page goes away, never into an address). The next load of the page sends the
cookie once; the new session claims the entry (``claim``) and takes over the user and what
the Segment page kept.

The rules:

- the store keeps only each token's SHA-256, never the token itself;
- a token works once: ``claim`` hands the entry on under a fresh token, and the old one is dead;
- an entry ends ``lifetime_s`` after the sign-in (not extended by use; ``LIVERSEG_SIGN_IN_HOURS``,
  default 12), at sign-out (``revoke``), or when the session holding it has ended and no reload
  has claimed it (``release_ended``, from the sweeper that releases closed sessions): a closed
  tab's result does not outlive its session, so memory stays bounded as before;
- at most ``max_entries`` entries (the oldest sign-ins go first);
- each entry records the credential its user signed in with (``AccessPolicy.credential_tag``):
  the caller refuses a claim once that has changed (a new password, a removed user).

Thread-safe: one store serves every session of the server process. This module never
imports Streamlit.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from core import config

#: Sign-ins kept at most; each holds references to what its session already holds, not copies.
MAX_ENTRIES = 256
#: What ``secrets.token_urlsafe(32)`` makes: anything else a browser sends is no token.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class SignIn:
    """One kept sign-in.

    Attributes:
        user: who signed in (the open app's one user when there is no login).
        credential: the credential's tag at sign-in (``AccessPolicy.credential_tag``).
        session: the Streamlit session that holds it now.
        issued: when the user signed in (``time.time()``); the entry ends ``lifetime_s`` later.
        kept: what the Segment page keeps for the next reload (its last result, scan, reference, viewer).
    """

    user: str
    credential: str
    session: str
    issued: float
    kept: dict = field(default_factory=dict)


class SignInStore:
    def __init__(self, lifetime_s: float = config.SIGN_IN_HOURS * 3600, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.time) -> None:
        self.lifetime_s = lifetime_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, SignIn] = {}  # token digest -> sign-in, oldest sign-in first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, user: str, credential: str, session: str) -> str:
        """A new sign-in of ``user`` held by ``session``; returns its token (for that session's browser only)."""
        return self._add(SignIn(user, credential, session, self._clock()))

    def _add(self, entry: SignIn) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._drop_expired()
            self._entries[_digest(token)] = entry
            self._entries = dict(sorted(self._entries.items(), key=lambda item: item[1].issued)[-self.max_entries:])
        return token

    def claim(self, token: str, session: str) -> tuple[str, SignIn] | None:
        """The sign-in ``token`` names, now held by ``session`` under a fresh token: ``(new token, entry)``.

        ``None`` for an unknown, used, revoked or expired token, or anything that is not a token. The old token is
        dead either way.
        """
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            return None
        with self._lock:
            self._drop_expired()
            entry = self._entries.pop(_digest(token), None)
        if entry is None:
            return None
        entry.session = session
        return self._add(entry), entry

    def keep(self, token: str, kept: dict) -> None:
        """Replace what the sign-in ``token`` keeps for the next reload (nothing happens for a dead token)."""
        with self._lock:
            entry = self._entries.get(_digest(token))
            if entry is not None:
                entry.kept = dict(kept)

    def revoke(self, token: str) -> None:
        """End the sign-in ``token`` (sign-out)."""
        with self._lock:
            self._entries.pop(_digest(token), None)

    def release_ended(self, live: Callable[[str], bool]) -> int:
        """Drop the sign-ins whose session ``live`` says has ended (and no reload has claimed); returns how many."""
        with self._lock:
            ended = [digest for digest, entry in self._entries.items() if not live(entry.session)]
            for digest in ended:
                del self._entries[digest]
        return len(ended)

    def _drop_expired(self) -> None:
        cutoff = self._clock() - self.lifetime_s
        self._entries = {digest: entry for digest, entry in self._entries.items() if entry.issued > cutoff}
