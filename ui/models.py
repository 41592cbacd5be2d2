"""What the Models page changes for everyone: the default model, and who may choose it."""

from __future__ import annotations

from core.errors import LiverSegError
from core.model import registry
from ui.session import SHARED_USER, access_policy, current_user


def default_model_refusal() -> str | None:
    """Why this session may not choose the default model, in plain words; ``None`` when it may.

    The default is every user's model on the Segment page. Where the login names its users, only an
    administrator (``LIVERSEG_ADMINS`` or ``[auth] admins``, as the access settings say now) may change
    it; with no login, or one shared password and no named users, whoever is let in may.
    """
    try:
        policy = access_policy()
    except LiverSegError:
        return "The access settings are unusable, so nobody may change the default model."
    if not policy.users:
        return None
    user, admin = current_user()
    if admin and user in policy.admins:
        return None
    who = "with the shared password" if user == SHARED_USER else f"as {user}"
    return (f"Only an administrator can change the default model, because it is the model every user's Segment page uses. "
            f"You are signed in {who}, not as an administrator of this server; ask one to change it.")


def set_default_model(name: str) -> None:
    """Make ``name`` the default model, if this session may (checked here, where the change happens, not only by the page)."""
    refusal = default_model_refusal()
    if refusal:
        raise LiverSegError(refusal)
    registry.set_default_model(name)
