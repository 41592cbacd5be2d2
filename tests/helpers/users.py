"""A users file for a login with named users, each with the password ``NAME-pass`` (hashed with the fewest rounds allowed)."""

from __future__ import annotations

from pathlib import Path

from core.server.access import MIN_ITERATIONS, hash_password


def password(name: str) -> str:
    return f"{name}-pass"


def write_users(path: Path, *names: str) -> Path:
    """``path`` as a ``LIVERSEG_USERS_FILE`` listing ``names``."""
    path.write_text("".join(f'{name} = "{hash_password(password(name), iterations=MIN_ITERATIONS)}"\n' for name in names),
                    encoding="utf-8")
    return path
