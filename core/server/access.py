"""Who may use the app: an optional shared password or named users with hashed passwords.

The settings come from the environment or from Streamlit secrets (the pages hand
the ``[auth]`` table in; this module never imports Streamlit):

- ``LIVERSEG_PASSWORD`` or ``[auth] password``: one shared password, in plain text
  or hashed as below. The environment wins when both are set.
- ``LIVERSEG_ADMINS`` (comma-separated) or ``[auth] admins = [...]``: named users who may
  cancel anyone's training job (the others cancel only their own).
- ``[auth.users]`` in ``.streamlit/secrets.toml`` and/or the TOML file named by
  ``LIVERSEG_USERS_FILE``: ``name = "pbkdf2_sha256$ITERATIONS$SALT$HASH"`` lines,
  made by ``python -m core hash-password``. The file wins for a name in both.

With none of them the app is open, and says so on every page. A setting that is
present but unusable (an empty password, a malformed hash, an unreadable users
file) raises ``LiverSegError``: the app then refuses everyone rather than open up.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import os
import secrets
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import LiverSegError

ALGORITHM = "pbkdf2_sha256"
#: OWASP's 2023 figure for PBKDF2-HMAC-SHA256; about 0.3 s per login on a laptop core.
DEFAULT_ITERATIONS = 600_000
#: Fewer would make a stolen hash cheap to brute-force.
MIN_ITERATIONS = 10_000


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (salt and hash in unpadded URL-safe base64)."""
    if not password:
        raise LiverSegError("the password is empty; choose a non-empty password")
    if iterations < MIN_ITERATIONS:
        raise LiverSegError(f"{iterations} PBKDF2 iterations is too few; use at least {MIN_ITERATIONS}")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join([ALGORITHM, str(iterations), _b64(salt), _b64(digest)])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parse_hash(encoded: str, owner: str) -> tuple[int, bytes, bytes]:
    """Check the stored form once, at configuration time, so a typo refuses logins with a clear reason."""
    parts = encoded.split("$")
    try:
        if len(parts) != 4 or parts[0] != ALGORITHM:
            raise ValueError
        iterations, salt, digest = int(parts[1]), _unb64(parts[2]), _unb64(parts[3])
        if iterations < MIN_ITERATIONS or not salt or len(digest) != 32:
            raise ValueError
    except ValueError:
        raise LiverSegError(
            f"the password hash for {owner} is not of the form {ALGORITHM}$ITERATIONS$SALT$HASH "
            f"(at least {MIN_ITERATIONS} iterations); make one with `python -m core hash-password`"
        ) from None
    return iterations, salt, digest


def is_hashed(value: str) -> bool:
    return value.startswith(ALGORITHM + "$")


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``pbkdf2_sha256$...`` hash, compared in constant time."""
    iterations, salt, expected = _parse_hash(encoded, "this password")
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations), expected)


@dataclass(frozen=True)
class AccessPolicy:
    """The configured credentials; ``open`` when there are none.

    Attributes:
        password: the shared password, plain or hashed; ``None`` when not set.
        users: user name -> ``pbkdf2_sha256$...`` hash.
        admins: named users who may also cancel other users' training jobs.
    """

    password: str | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    admins: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.password is not None:
            if not self.password:
                raise LiverSegError("the access password is set but empty; set a non-empty password or unset it")
            if is_hashed(self.password):
                _parse_hash(self.password, "the shared password")
        for name, encoded in self.users.items():
            if not name.strip():
                raise LiverSegError("a user in the users list has an empty name; give every user a name")
            _parse_hash(str(encoded), f"user {name!r}")
        unknown = sorted(self.admins - set(self.users))
        if unknown:
            raise LiverSegError(f"administrator(s) {', '.join(unknown)} are not among the users; list only named users as administrators")

    @property
    def open(self) -> bool:
        """True when no credentials are configured: anyone who can reach the app may use it."""
        return self.password is None and not self.users

    def credential_tag(self, user: str) -> str | None:
        """A fingerprint of what ``user`` signs in with now (``""``: the shared password; anyone when the app is open),
        or ``None`` when it no longer lets anyone in.

        A sign-in kept across reloads (``core.server.sign_ins``) ends once this changes: a new password or hash,
        a removed user, a login added to an open app.
        """
        if self.open:
            return "open"
        encoded = self.users.get(user) if user else self.password
        return None if encoded is None else hashlib.sha256(f"{user}\0{encoded}".encode()).hexdigest()

    def check(self, user: str, password: str) -> bool:
        """Whether the credentials let in: a listed user, or the shared password with no user name.

        Takes the same time whether or not the user exists, so names cannot be probed.
        """
        user = user.strip()
        if user:
            encoded = self.users.get(user)
            if encoded is None:
                verify_password(password, _dummy_hash())  # same work as a real user, then refuse
                return False
            return verify_password(password, encoded)
        if self.password is None:
            return False
        if is_hashed(self.password):
            return verify_password(password, self.password)
        # Digests first: compare_digest on the raw strings would leak the password's length.
        return hmac.compare_digest(hashlib.sha256(password.encode()).digest(), hashlib.sha256(self.password.encode()).digest())


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe())


def read_users_file(path: Path) -> dict[str, str]:
    """Users from a TOML file of ``name = "pbkdf2_sha256$..."`` lines (an ``[auth.users]`` table also works)."""
    try:
        with open(path, "rb") as stream:
            table = tomllib.load(stream)
    except OSError as error:
        raise LiverSegError(f"cannot read the users file {path} ({error.strerror}); fix LIVERSEG_USERS_FILE or unset it") from None
    except tomllib.TOMLDecodeError as error:
        raise LiverSegError(f"the users file {path} is not valid TOML ({error}); write one `name = \"hash\"` per line") from None
    table = table.get("auth", {}).get("users", table) if "auth" in table else table
    if not all(isinstance(value, str) for value in table.values()):
        raise LiverSegError(f"the users file {path} must hold only `name = \"pbkdf2_sha256$...\"` lines")
    return dict(table)


def policy_from(environ: Mapping[str, str] = os.environ, auth_secrets: Mapping | None = None) -> AccessPolicy:
    """The policy set by the environment and by the ``[auth]`` table of Streamlit secrets."""
    auth_secrets = auth_secrets or {}
    password = environ.get("LIVERSEG_PASSWORD")
    if password is None and "password" in auth_secrets:
        password = str(auth_secrets["password"])
    users = {str(name): str(encoded) for name, encoded in dict(auth_secrets.get("users", {})).items()}
    users_file = environ.get("LIVERSEG_USERS_FILE")
    if users_file:
        users.update(read_users_file(Path(users_file).expanduser()))
    admins = environ.get("LIVERSEG_ADMINS")
    names = admins.split(",") if admins is not None else list(auth_secrets.get("admins", []))
    return AccessPolicy(password=password, users=users, admins=frozenset(name.strip() for name in names if name.strip()))


class LoginThrottle:
    """Exponential back-off after failed logins, per key (a client address or a session).

    The first ``free_attempts`` failures cost nothing; each further one doubles the
    wait, up to ``max_wait`` seconds. A success clears the key, and so does an
    hour (``forget_after``) without failures. Thread-safe: one instance serves every
    session of the server process.
    """

    def __init__(self, free_attempts: int = 3, base_wait: float = 1.0, max_wait: float = 60.0, forget_after: float = 3600.0,
                 clock=time.monotonic) -> None:
        self.free_attempts = free_attempts
        self.base_wait = base_wait
        self.max_wait = max_wait
        self.forget_after = forget_after
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, time of the last failure)
        self._lock = threading.Lock()

    def wait_seconds(self, key: str) -> float:
        """How long ``key`` must still wait before its next attempt is considered (0 when it may try now)."""
        with self._lock:
            count, last = self._failures.get(key, (0, 0.0))
        if count < self.free_attempts:
            return 0.0
        wait = min(self.max_wait, self.base_wait * 2 ** (count - self.free_attempts))
        return max(0.0, last + wait - self._clock())

    def failed(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            # Forget stale keys here, so that a stream of one-off sessions cannot grow the table for ever.
            self._failures = {k: v for k, v in self._failures.items() if now - v[1] < self.forget_after}
            count, _ = self._failures.get(key, (0, 0.0))
            self._failures[key] = (count + 1, now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


#: Key under which every failed login of the server counts (``LoginGuard``).
EVERYONE = "*"


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is not even checked now, in words for the login form."""

    seconds: float
    message: str


class LoginGuard:
    """Throttles sign-in per tab and client address, per account and over the whole server, and bounds its CPU cost.

    A tab-only back-off is beaten by opening fresh tabs; so failures also count against the
    account named (the shared password is one account) and against the server as a whole,
    each with its own allowance. An attempt that any of them holds back is refused without
    hashing anything, and only one password is hashed at a time (PBKDF2 takes about a second
    of one core here): however many tabs guess at once, sign-in never takes more than one
    core, and the others stay free for segmentation.

    Args:
        per_key: back-off per tab and per client address (3 free failures, then 1, 2, 4 ... 60 s).
        per_account: back-off per account (5 free failures, then 30 s doubling up to 15 min: a lock-out).
        overall: back-off over all attempts (30 free failures an hour, then 1 s doubling up to 60 s).
    """

    def __init__(self, per_key: LoginThrottle | None = None, per_account: LoginThrottle | None = None,
                 overall: LoginThrottle | None = None) -> None:
        self.per_key = per_key or LoginThrottle()
        self.per_account = per_account or LoginThrottle(free_attempts=5, base_wait=30.0, max_wait=900.0)
        self.overall = overall or LoginThrottle(free_attempts=30, base_wait=1.0, max_wait=60.0)
        self._hashing = threading.Lock()

    def refusal(self, keys: list[str], account: str) -> Refusal | None:
        """Why an attempt on ``account`` from ``keys`` (tab, address) must wait, or ``None`` when it may be checked."""
        wait = self.per_account.wait_seconds(account)
        if wait > 0:
            return Refusal(wait, f"This account is locked after repeated wrong passwords. Try again in {math.ceil(wait)} seconds, "
                                 "or ask the administrator.")
        wait = max([self.per_key.wait_seconds(key) for key in keys] + [self.overall.wait_seconds(EVERYONE)])
        if wait > 0:
            return Refusal(wait, f"Too many failed attempts. Try again in {math.ceil(wait)} seconds.")
        return None

    def attempt(self, policy: AccessPolicy, user: str, password: str, keys: list[str]) -> bool | Refusal:
        """Check the credentials unless held back; records the outcome. ``True``, ``False``, or why it was not checked."""
        account = user.strip() or "shared password"
        refused = self.refusal(keys, account)
        if refused:
            return refused
        if not self._hashing.acquire(blocking=False):
            return Refusal(1.0, "The server is checking another sign-in. Try again in a second.")
        try:
            allowed = policy.check(user, password)
        finally:
            self._hashing.release()
        # A success clears its tab and account, never the server-wide count: a guesser who also
        # holds some password must not reset everyone's allowance by signing in.
        record = "succeeded" if allowed else "failed"
        for key in keys:
            getattr(self.per_key, record)(key)
        getattr(self.per_account, record)(account)
        if not allowed:
            self.overall.failed(EVERYONE)
        return allowed
