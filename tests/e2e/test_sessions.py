"""Issue 22, findings 2, 3 and 5 in a real browser: uploads need a signed-in session, a bomb is refused at once,
and a closed tab's upload folder and uploaded files are released within the session timeout plus a minute."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.app_server import App
from tests.e2e.test_bad_uploads import make_stand_in_model, upload
from tests.helpers.bombs import nifti_bomb
from tests.test_bad_inputs import AFFINE, phantom_volume, save_nifti

pytestmark = pytest.mark.e2e

PASSWORD = "lab-server-secret"
SESSION_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def rss_mb(app: App) -> float:
    """Resident memory of the app's process, MB."""
    status = Path(f"/proc/{app.process.pid}/status").read_text(encoding="utf-8")
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def open_with_session_ids(context, url: str) -> tuple:
    """A tab on ``url`` and the ids its WebSocket's first message holds, the session's among them (as an attacker reads it)."""
    page, frames = context.new_page(), []
    page.on("websocket", lambda socket: socket.on("framereceived", lambda frame: frames.append(frame)))
    page.goto(url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for frame in frames:
            found = SESSION_ID.findall(frame if isinstance(frame, bytes) else frame.encode())
            if found:
                return page, sorted({uuid.decode() for uuid in found})
        page.wait_for_timeout(200)
    raise AssertionError("no session id seen on the WebSocket")


def put_file(context, url: str, session_id: str, megabytes: int) -> int:
    """PUT a file to Streamlit's upload route for ``session_id`` as the browser does (XSRF cookie echoed); the status."""
    cookie = next(c["value"] for c in context.cookies() if c["name"] == "_streamlit_xsrf")
    response = context.request.put(f"{url}/_stcore/upload_file/{session_id}/probe-{time.monotonic_ns()}",
                                   multipart={"file": {"name": "probe.bin", "mimeType": "application/octet-stream",
                                                       "buffer": bytes(megabytes * 2**20)}},
                                   headers={"X-Xsrftoken": cookie})
    return response.status


@pytest.fixture(scope="module")
def private_app(tmp_path_factory):
    server = App(env={"LIVERSEG_PASSWORD": PASSWORD, "LIVERSEG_UPLOAD_DIR": str(tmp_path_factory.mktemp("uploads"))})
    yield server
    server.stop()


def test_uploads_are_refused_until_the_session_signs_in(browser, private_app):
    context = browser.new_context()
    try:
        page, ids = open_with_session_ids(context, private_app.url)
        page.get_by_role("button", name="Log in").wait_for()
        before = rss_mb(private_app)
        assert [put_file(context, private_app.url, session_id, 50) for session_id in ids for _ in range(3)] == [400] * 3 * len(ids)
        assert rss_mb(private_app) - before < 50  # nothing of them is kept
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("heading", name="Segment").wait_for(timeout=300_000)
        assert sorted(put_file(context, private_app.url, session_id, 1) for session_id in ids) == [204] + [400] * (len(ids) - 1)
    finally:
        context.close()


@pytest.fixture(scope="module")
def short_lived_app(tmp_path_factory):
    """Sessions kept 4 s after their tab closes, swept every 2 s: the release is seen in seconds, not minutes."""
    uploads, trained = tmp_path_factory.mktemp("uploads"), tmp_path_factory.mktemp("trained")
    make_stand_in_model(trained)
    server = App(env={"LIVERSEG_UPLOAD_DIR": str(uploads), "LIVERSEG_TRAINED_DIR": str(trained),
                      "STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL": "4", "LIVERSEG_SESSION_SWEEP_S": "2"})
    server.uploads = uploads
    yield server
    server.stop()


def test_a_bomb_upload_is_refused_at_once_with_little_memory(browser, short_lived_app, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(short_lived_app.url)
        page.get_by_role("heading", name="Segment").wait_for(timeout=300_000)
        bomb = nifti_bomb(tmp_path / "bomb.nii.gz")
        before = rss_mb(short_lived_app)
        started = time.monotonic()
        upload(page, "Or upload a CT scan", bomb)
        expect(page.get_by_test_id("stAlertContentError")).to_contain_text("declares 1024x1024x512 voxels", timeout=30_000)
        assert time.monotonic() - started < 5.0  # upload, page run and refusal; the refusal itself is milliseconds
        assert rss_mb(short_lived_app) - before < 500
    finally:
        context.close()


def test_a_closed_tab_releases_its_upload_folder_and_files(browser, short_lived_app, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(short_lived_app.url)
    page.get_by_role("heading", name="Segment").wait_for(timeout=300_000)
    upload(page, "Or upload a CT scan", save_nifti(phantom_volume(), tmp_path / "phantom.nii.gz", AFFINE))
    page.get_by_role("button", name="Find the liver and lesions").wait_for()
    assert len(list(short_lived_app.uploads.iterdir())) >= 1
    context.close()
    deadline = time.monotonic() + 4 + 2 + 30  # the session timeout, a sweep, and a margin for a loaded machine
    while list(short_lived_app.uploads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert list(short_lived_app.uploads.iterdir()) == []
