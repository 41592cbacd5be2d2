"""Driving the Segment page in Chromium, shared by its e2e tests and benchmarks/slice_latency.py."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.app_server import SCREENSHOTS, screenshot

PLANE_LABELS = {"axial": "Axial (from the feet)", "coronal": "Coronal (from the front)", "sagittal": "Sagittal (from the side)"}
#: The viewer's slice picture: a Plotly layout image, whose href changes with every slice.
SLICE_IMAGE = '[data-testid="stPlotlyChart"] .imagelayer image'
#: Height of a table row (and of the header) in Streamlit's data grid.
ROW_PX = 35
#: The app's environment for these tests: no file watcher (a busy checkout would rerun the page mid-test).
APP_ENV = {"STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}

# Arms a promise that resolves to the milliseconds from the user's next key press or click until the
# slice picture has changed and the browser has painted the frame after it (two animation frames:
# the first runs before that paint, the second after). A new slice remounts the chart (Streamlit keys
# a Plotly chart by its figure) and the old one lingers a moment, marked stale: only the current
# (not stale) chart counts.
_ARM = """selector => {
  const current = () => {
    const image = Array.from(document.querySelectorAll(selector))
      .find(image => image.closest('[data-testid="stElementContainer"]')?.getAttribute('data-stale') !== 'true');
    return image ? image.getAttribute('href') : null;
  };
  const before = current();
  let start = null;
  const begin = () => { if (start === null) start = performance.now(); };
  document.addEventListener('keydown', begin, {capture: true, once: true});
  document.addEventListener('pointerdown', begin, {capture: true, once: true});
  window.__slicePainted = new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error('no new slice picture within 60 s')), 60000);
    const observer = new MutationObserver(() => {
      const now = current();
      if (start === null || now === null || now === before) return;
      observer.disconnect();
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - start)));
    });
    observer.observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['href', 'data-stale']});
  });
}"""


def full_screenshot(page, name: str) -> Path:
    """A screenshot of the whole page: Streamlit scrolls inside its main block, so grow the viewport to fit it first."""
    size = page.viewport_size
    height = page.evaluate("""() => Math.max(...Array.from(document.querySelectorAll(
        '[data-testid="stMain"], [data-testid="stMainBlockContainer"]')).map(e => e.scrollHeight), 600)""")
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(300)  # let charts resize to the new viewport
    try:
        return screenshot(page, name)
    finally:
        page.set_viewport_size(size)


def chart_screenshot(page, name: str) -> Path:
    """A screenshot of the slice viewer's chart alone (what the mouse is over stays as it is)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.get_by_test_id("stPlotlyChart").first.screenshot(path=str(path))
    return path


def choose_sample(page) -> None:
    page.get_by_role("button", name="Try the sample scan").click()
    page.get_by_text("LiTS case 117 (sample)").wait_for()


def upload_scan(page, path: Path) -> None:
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Or upload a CT scan")
    uploader.locator("input[type=file]").set_input_files(str(path))
    page.get_by_text(f"Scan: {path.name}").wait_for(timeout=180_000)


def upload_reference(page, path: Path) -> None:
    page.get_by_text("Compare with a reference segmentation").click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Reference label map")
    uploader.locator("input[type=file]").set_input_files(str(path))
    page.get_by_role("tab", name="Compare with reference").wait_for(timeout=120_000)


def segment(page, timeout_s: float = 600) -> None:
    """Press the button and wait for the result (the headline numbers and the slice picture)."""
    page.get_by_role("button", name="Find the liver and lesions").click()
    page.get_by_text("Tumour burden").wait_for(timeout=timeout_s * 1000)
    page.locator(SLICE_IMAGE).first.wait_for(state="attached")


def slice_slider(page):
    """The viewer's slice slider, once a rerun that rebuilt the viewer has cleared the old one away."""
    page.wait_for_function("() => document.querySelectorAll('input[aria-label=\"Slice\"]').length === 1")
    return page.get_by_role("slider", name="Slice")


def slice_number(page) -> int:
    """The viewer's slice, numbered from 1."""
    return int(slice_slider(page).input_value())


def wait_for_slice(page, first: int, last: int) -> None:
    """Wait until the viewer shows a slice numbered ``first`` to ``last``."""
    page.wait_for_function("([first, last]) => { const sliders = document.querySelectorAll('input[aria-label=\"Slice\"]');"
                           " return sliders.length === 1 && +sliders[0].value >= first && +sliders[0].value <= last; }", arg=[first, last])


def slice_count(page) -> int:
    return int(slice_slider(page).get_attribute("max"))


def choose_plane(page, plane: str) -> None:
    """Switch the viewer's plane and wait until its picture is shown."""
    option = page.get_by_role("radio", name=PLANE_LABELS[plane])
    if option.is_checked():
        return
    page.evaluate(_ARM, SLICE_IMAGE)
    page.get_by_text(PLANE_LABELS[plane], exact=True).click()
    page.evaluate("() => window.__slicePainted")


def hover_readout(page) -> str:
    """Hover over the middle of the slice picture; the readout Plotly shows there."""
    page.get_by_test_id("stPlotlyChart").first.scroll_into_view_if_needed()
    picture = page.locator(SLICE_IMAGE).first.bounding_box()
    for offset in (0, 3):  # Plotly hovers on mouse moves, so make sure there is one over the picture
        page.mouse.move(picture["x"] + picture["width"] / 2 + offset, picture["y"] + picture["height"] / 2)
    readout = page.locator("[data-testid=stPlotlyChart] .hoverlayer .hovertext").first
    readout.wait_for()
    return readout.text_content()  # SVG: the lines run together


def choose_lesion(page, row: int) -> None:
    """Click the selection box of the lesion table's ``row`` (from 0); the table is drawn on a canvas."""
    table = page.get_by_test_id("stDataFrame").first
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + ROW_PX * (row + 1.5))  # below the header row


def move_slice(page, key: str = "ArrowRight") -> float:
    """Press ``key`` on the slice slider; milliseconds until the new slice was painted."""
    slider = slice_slider(page)
    slider.focus()
    page.evaluate(_ARM, SLICE_IMAGE)
    slider.press(key)
    return page.evaluate("() => window.__slicePainted")
