"""core.server.access: password hashing, the policy from environment and secrets, the login throttle."""


import pytest

from core import config
from core.errors import LiverSegError
from core.server import access
from core.server.access import AccessPolicy, LoginThrottle, hash_password, policy_from, verify_password

FAST = access.MIN_ITERATIONS  # enough for the format; tests need not pay for 600k rounds


@pytest.fixture
def alice_hash() -> str:
    return hash_password("correct horse", iterations=FAST)


def test_hash_verifies_only_its_own_password(alice_hash):
    assert alice_hash.startswith(f"pbkdf2_sha256${FAST}$")
    assert verify_password("correct horse", alice_hash)
    assert not verify_password("correct hors", alice_hash)
    assert not verify_password("", alice_hash)


def test_each_hash_has_its_own_salt():
    assert hash_password("same", iterations=FAST) != hash_password("same", iterations=FAST)


@pytest.mark.parametrize("bad", ["", "pbkdf2_sha256$10$c2FsdA$aGFzaA", "md5$1$a$b", "pbkdf2_sha256$x$y$z", "plain"])
def test_malformed_user_hashes_refuse_to_configure(bad):
    with pytest.raises(LiverSegError, match="hash-password|empty"):
        AccessPolicy(users={"alice": bad})


def test_no_settings_means_open():
    assert policy_from({}, {}).open
    assert policy_from({"UNRELATED": "x"}, None).open


def test_empty_password_fails_closed_not_open():
    with pytest.raises(LiverSegError, match="empty"):
        policy_from({"LIVERSEG_PASSWORD": ""}, {})


def test_plain_shared_password_from_environment_wins_over_secrets():
    policy = policy_from({"LIVERSEG_PASSWORD": "from-env"}, {"password": "from-secrets"})
    assert not policy.open
    assert policy.check("", "from-env")
    assert not policy.check("", "from-secrets")
    assert not policy.check("", "from-en")


def test_hashed_shared_password_from_secrets(alice_hash):
    policy = policy_from({}, {"password": alice_hash})
    assert policy.check("", "correct horse")
    assert not policy.check("", alice_hash)  # the hash itself is not a password


def test_users_from_secrets_and_file(tmp_path, alice_hash):
    users_file = tmp_path / "users.toml"
    users_file.write_text(f'bob = "{hash_password("bobs secret", iterations=FAST)}"\n', encoding="utf-8")
    policy = policy_from({"LIVERSEG_USERS_FILE": str(users_file)}, {"users": {"alice": alice_hash}})
    assert policy.check("alice", "correct horse")
    assert policy.check(" bob ", "bobs secret")
    assert not policy.check("alice", "bobs secret")
    assert not policy.check("mallory", "correct horse")
    assert not policy.check("", "correct horse")  # no shared password configured


def test_users_file_may_use_the_secrets_layout(tmp_path, alice_hash):
    users_file = tmp_path / "secrets.toml"
    users_file.write_text(f'[auth.users]\nalice = "{alice_hash}"\n', encoding="utf-8")
    assert policy_from({"LIVERSEG_USERS_FILE": str(users_file)}).check("alice", "correct horse")


@pytest.mark.parametrize("content", ["alice = ", "alice = 3\n", None])
def test_unusable_users_file_fails_closed(tmp_path, content):
    users_file = tmp_path / "users.toml"
    if content is not None:
        users_file.write_text(content, encoding="utf-8")
    with pytest.raises(LiverSegError, match="users file"):
        policy_from({"LIVERSEG_USERS_FILE": str(users_file)})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_backs_off_exponentially_per_key_and_resets_on_success():
    clock = Clock()
    throttle = LoginThrottle(free_attempts=2, base_wait=1.0, max_wait=4.0, clock=clock)
    for _ in range(2):
        throttle.failed("a")
    assert throttle.wait_seconds("a") == 1.0
    throttle.failed("a")
    assert throttle.wait_seconds("a") == 2.0
    for _ in range(5):
        throttle.failed("a")
    assert throttle.wait_seconds("a") == 4.0  # capped
    assert throttle.wait_seconds("b") == 0.0  # other sessions are not slowed
    clock.now += 3.0
    assert throttle.wait_seconds("a") == 1.0
    throttle.succeeded("a")
    assert throttle.wait_seconds("a") == 0.0


def test_throttle_forgets_stale_keys():
    clock = Clock()
    throttle = LoginThrottle(free_attempts=1, forget_after=10.0, clock=clock)
    throttle.failed("old")
    clock.now += 11.0
    throttle.failed("new")
    throttle.failed("old")  # counted afresh: the earlier failure has been forgotten
    assert throttle.wait_seconds("old") == 1.0


def test_hash_password_command_prints_a_users_line(monkeypatch, capsys):
    import io
    import tomllib

    from core.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
    assert main(["hash-password", "--user", "dr who", "--iterations", str(FAST)]) == 0
    users = tomllib.loads(capsys.readouterr().out)
    assert AccessPolicy(users=users).check("dr who", "s3cret pass")


def test_hash_password_command_refuses_an_empty_password(monkeypatch, capsys):
    import io

    from core.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["hash-password"]) == 2
    assert capsys.readouterr().err.startswith("error: the password is empty")


# The gate in app.py, run by Streamlit's AppTest (no browser; tests/e2e/test_access.py has the real one).

APP = str(config.ROOT / "app.py")


def run_app(monkeypatch, **env: str):
    from streamlit.testing.v1 import AppTest

    for name in ("LIVERSEG_PASSWORD", "LIVERSEG_USERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return AppTest.from_file(APP, default_timeout=60).run()


def attempt(app, password: str):
    app.text_input[0].input(password)
    app.button[0].click()
    return app.run()


def test_gate_backs_off_after_repeated_failures(monkeypatch):
    app = run_app(monkeypatch, LIVERSEG_PASSWORD="right")
    for _ in range(3):  # three free tries, then a wait
        attempt(app, "wrong")
        assert [e.value for e in app.error] == ["Wrong password."]
    attempt(app, "right")  # even the right password waits out the back-off
    assert "Too many failed attempts" in app.error[0].value
    assert "user" not in app.session_state


def test_gate_with_unusable_settings_lets_nobody_in(monkeypatch, tmp_path):
    app = run_app(monkeypatch, LIVERSEG_USERS_FILE=str(tmp_path / "missing.toml"))
    assert not app.exception
    assert "nobody is let in" in app.error[0].value
    assert not app.text_input and not app.title


def test_gate_reads_users_from_streamlit_secrets(monkeypatch, alice_hash):
    from streamlit.testing.v1 import AppTest

    for name in ("LIVERSEG_PASSWORD", "LIVERSEG_USERS_FILE"):
        monkeypatch.delenv(name, raising=False)
    app = AppTest.from_file(APP, default_timeout=60)
    app.secrets["auth"] = {"users": {"alice": alice_hash}}
    app.run()
    assert [field.label for field in app.text_input] == ["User name", "Password"]
    app.text_input[0].input("alice")
    app.text_input[1].input("correct horse")
    app.button[0].click()
    app.run()
    assert app.session_state["user"] == "alice"


# Issue 22, finding 4: fresh tabs must not bring fresh guesses, and guessing must not take the CPU.


def guard(clock) -> access.LoginGuard:
    return access.LoginGuard(LoginThrottle(clock=clock), LoginThrottle(free_attempts=5, base_wait=30.0, max_wait=900.0, clock=clock),
                             LoginThrottle(free_attempts=30, clock=clock))


def test_six_fresh_tabs_get_five_guesses_in_all_then_the_account_is_locked_with_a_notice(alice_hash):
    clock, policy = Clock(), AccessPolicy(users={"alice": alice_hash})
    logins = guard(clock)
    outcomes = [logins.attempt(policy, "alice", f"guess {tab}.{n}", [f"tab{tab}"]) for tab in range(6) for n in range(3)]
    assert outcomes[:5] == [False] * 5
    assert all(isinstance(outcome, access.Refusal) for outcome in outcomes[5:])
    assert "This account is locked" in outcomes[5].message and "30 seconds" in outcomes[5].message
    assert isinstance(logins.attempt(policy, "alice", "correct horse", ["tab9"]), access.Refusal)  # locked even for the right one
    clock.now += 31
    assert logins.attempt(policy, "alice", "correct horse", ["tab9"]) is True


def test_guessing_many_accounts_is_throttled_overall(alice_hash):
    clock, policy = Clock(), AccessPolicy(users={"alice": alice_hash})
    logins = guard(clock)
    outcomes = [logins.attempt(policy, f"user{n}", "guess", [f"tab{n}"]) for n in range(31)]
    assert outcomes[:30] == [False] * 30
    assert isinstance(outcomes[30], access.Refusal) and "Too many failed attempts" in outcomes[30].message


def test_only_one_password_is_hashed_at_a_time(alice_hash):
    import threading

    started, release = threading.Event(), threading.Event()

    class Slow(AccessPolicy):
        def check(self, user, password):
            started.set()
            release.wait(5)
            return False

    logins = access.LoginGuard()
    worker = threading.Thread(target=logins.attempt, args=(Slow(password="x"), "", "a", ["tab1"]))
    worker.start()
    started.wait(5)
    busy = logins.attempt(AccessPolicy(password="x"), "", "x", ["tab2"])
    release.set()
    worker.join()
    assert isinstance(busy, access.Refusal) and "checking another sign-in" in busy.message
    assert logins.attempt(AccessPolicy(password="x"), "", "x", ["tab2"]) is True


def test_administrators_are_named_users(alice_hash):
    policy = policy_from({"LIVERSEG_ADMINS": "alice, "}, {"users": {"alice": alice_hash, "bob": alice_hash}})
    assert policy.admins == {"alice"}
    assert policy_from({}, {"users": {"alice": alice_hash}, "admins": ["alice"]}).admins == {"alice"}
    with pytest.raises(LiverSegError, match="administrator.*carol.*not among the users"):
        policy_from({"LIVERSEG_ADMINS": "carol"}, {"users": {"alice": alice_hash}})
