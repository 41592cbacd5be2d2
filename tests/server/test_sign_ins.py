"""core/server/sign_ins.py: the sign-ins a reload of the page takes over (issue 21), and what ends them."""

from __future__ import annotations

from core.server.access import MIN_ITERATIONS, AccessPolicy, hash_password
from core.server.sign_ins import SignInStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_brings_back_its_own_user_and_what_they_kept_once():
    store = SignInStore()
    alice = store.issue("alice", "tag-a", session="s1")
    bob = store.issue("bob", "tag-b", session="s2")
    store.keep(alice, {"scan": "alice's scan"})
    store.keep(bob, {"scan": "bob's scan"})

    token, entry = store.claim(alice, session="s3")
    assert (entry.user, entry.credential, entry.session, entry.kept) == ("alice", "tag-a", "s3", {"scan": "alice's scan"})
    assert token not in (alice, bob) and len(token) >= 43  # 32 random bytes, URL-safe
    assert store.claim(alice, session="s4") is None  # used once: the old token is dead
    assert store.claim(token, session="s4")[1].user == "alice"  # the fresh one works, once
    assert store.claim(bob, session="s5")[1].kept == {"scan": "bob's scan"}  # bob's token: bob's own, never alice's


def test_unknown_tokens_bring_back_nothing_and_tokens_are_kept_only_as_digests():
    store = SignInStore()
    token = store.issue("alice", "tag", session="s1")
    assert store.claim("", "s2") is None and store.claim("made-up", "s2") is None and store.claim(token[:-1], "s2") is None
    assert store.claim("A" * 43, "s2") is None and store.claim("x" * 10**6, "s2") is None and store.claim(None, "s2") is None
    assert token not in repr(store.__dict__)  # a memory dump or a log of the store shows no usable token


def test_a_sign_in_expires_a_fixed_time_after_signing_in_however_often_it_is_used():
    clock = Clock()
    store = SignInStore(lifetime_s=3600, clock=clock)
    token = store.issue("alice", "tag", session="s1")
    clock.now += 3000
    token, _ = store.claim(token, "s2")  # a reload does not extend it
    clock.now += 601
    assert store.claim(token, "s3") is None
    assert len(store) == 0


def test_sign_out_ends_it():
    store = SignInStore()
    token = store.issue("alice", "tag", session="s1")
    store.revoke(token)
    store.keep(token, {"scan": "kept"})  # too late: nothing is kept for a dead token
    assert store.claim(token, "s2") is None and len(store) == 0


def test_a_sign_in_whose_session_ended_without_a_reload_is_dropped_with_what_it_kept():
    store = SignInStore()
    closed = store.issue("alice", "tag", session="closed")
    reloaded = store.issue("bob", "tag", session="old")
    reloaded, _ = store.claim(reloaded, "new")  # the reload's new session holds it now
    assert store.release_ended(lambda session: session == "new") == 1
    assert store.claim(closed, "s") is None and store.claim(reloaded, "s")[1].user == "bob"


def test_the_store_is_bounded_the_oldest_sign_ins_go_first():
    clock = Clock()
    store = SignInStore(max_entries=3, clock=clock)
    tokens = []
    for n in range(5):
        clock.now += 1
        tokens.append(store.issue(f"user{n}", "tag", session=f"s{n}"))
    assert len(store) == 3
    assert [store.claim(token, "s") is not None for token in tokens] == [False, False, True, True, True]


def test_the_credential_tag_changes_with_the_password_and_the_user():
    hashed = {name: hash_password(f"{name}-pass", iterations=MIN_ITERATIONS) for name in ("alice", "bob")}
    policy = AccessPolicy(password="shared", users=hashed)
    tags = {policy.credential_tag("alice"), policy.credential_tag("bob"), policy.credential_tag("")}
    assert len(tags) == 3 and None not in tags
    assert policy.credential_tag("carol") is None  # not a user (any more)
    new_password = AccessPolicy(password="shared", users={**hashed, "alice": hash_password("new", iterations=MIN_ITERATIONS)})
    assert new_password.credential_tag("alice") != policy.credential_tag("alice")
    assert new_password.credential_tag("bob") == policy.credential_tag("bob")
    assert AccessPolicy(password="other", users=hashed).credential_tag("") != policy.credential_tag("")
    assert AccessPolicy(users=hashed).credential_tag("") is None  # the shared password was removed
    assert AccessPolicy().credential_tag("anyone") == "open" != policy.credential_tag("")
