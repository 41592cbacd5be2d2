import pytest

from tests.e2e.app_server import screenshot

pytestmark = pytest.mark.e2e


def test_app_opens_in_chromium(page):
    page.get_by_role("heading", name="Segment").wait_for()
    assert "LiverSeg" in page.title()
    screenshot(page, "00-start")
