"""Driving the Segment page in Chromium, shared by its e2e tests and benchmarks/slice_latency.py."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.app_server import SCREENSHOTS, screenshot

PLANE_LABELS = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}
#: The viewer's picture of the chosen plane (widgets/slice_viewer): a canvas whose data-plane and data-slice say what
#: it has painted, and whose data-paints counts its paints.
SLICE_CANVAS = ".lsv-active canvas"
#: Height of a table row (and of the header) in Streamlit's data grid.
ROW_PX = 35
#: The app's environment for these tests: no file watcher (a busy checkout would rerun the page mid-test).
APP_ENV = {"STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}

# Arms a promise that resolves to the milliseconds from the user's next input (key, pointer, wheel, slider, choice)
# until the viewer's canvas has changed ``attribute`` (data-slice: a new slice; data-paints: any new picture) and the
# browser has shown the frame after it (two animation frames: the first runs before that paint, the second after).
_ARM = """([selector, attribute]) => {
  const canvas = document.querySelector(selector);
  const before = canvas.getAttribute(attribute);
  let start = null;
  const begin = () => { if (start === null) start = performance.now(); };
  for (const type of ['keydown', 'pointerdown', 'wheel', 'input', 'change', 'click'])
    document.addEventListener(type, begin, {capture: true, once: true});
  window.__painted = new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error(`no new ${attribute} within 60 s`)), 60000);
    const observer = new MutationObserver(() => {
      if (start === null || canvas.getAttribute(attribute) === before) return;
      observer.disconnect();
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - start)));
    });
    observer.observe(canvas, {attributes: true, attributeFilter: [attribute]});
  });
}"""
# Counts the page's reruns from now on: Streamlit marks the elements of a running script stale.
_COUNT_RERUNS = """() => {
  window.__reruns = 0;
  new MutationObserver((changes) => {
    if (changes.some((change) => change.target.getAttribute('data-stale') === 'true')) window.__reruns += 1;
  }).observe(document.body, {attributes: true, subtree: true, attributeFilter: ['data-stale']});
}"""


def new_page(browser, url: str, width: int, height: int):
    """A fresh browser context at ``width`` x ``height`` on ``url``: (context, page)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(120_000)  # a loaded 2-core machine
    page.goto(url)
    return context, page


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
    page.locator(".lsv-active .lsv-stage").screenshot(path=str(path))
    return path


def choose_sample(page) -> None:
    page.get_by_role("button", name="Try the sample scan").click()
    page.get_by_text("LiTS case 117 (sample)").wait_for()


def upload_scan(page, path: Path) -> None:
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Or upload a CT scan")
    uploader.locator("input[type=file]").set_input_files(str(path))
    page.get_by_text(f"Scan: {path.name}").wait_for(timeout=180_000)


def open_choices(page) -> None:
    """Unfold the scan's choices (folded away once there is a result)."""
    folded = page.get_by_text("change it, compare with a reference, settings")
    if folded.count() and folded.first.is_visible():
        folded.first.click()


def upload_reference(page, path: Path) -> None:
    open_choices(page)
    page.get_by_text("Compare with a reference segmentation").click()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Reference label map")
    uploader.locator("input[type=file]").set_input_files(str(path))
    page.get_by_role("tab", name="Compare with reference").wait_for(timeout=120_000)


def segment(page, timeout_s: float = 600) -> None:
    """Press the button and wait for the result (the headline numbers and the slice picture)."""
    page.get_by_role("button", name="Find the liver and lesions").click()
    page.get_by_text("Tumour burden").wait_for(timeout=timeout_s * 1000)
    _wait_for_viewer(page)


def slice_slider(page):
    """The viewer's slice slider."""
    return page.locator(".lsv").get_by_role("slider", name="Slice")


def slice_number(page) -> int:
    """The slice the viewer has painted, numbered from 1."""
    return int(page.locator(SLICE_CANVAS).get_attribute("data-slice"))


def wait_for_slice(page, first: int, last: int) -> None:
    """Wait until the viewer has painted a slice numbered ``first`` to ``last``."""
    page.wait_for_function("([selector, first, last]) => { const slice = +document.querySelector(selector)?.dataset.slice;"
                           " return slice >= first && slice <= last; }", arg=[SLICE_CANVAS, first, last])


def slice_count(page) -> int:
    return int(slice_slider(page).get_attribute("max"))


def choose_plane(page, plane: str) -> None:
    """Switch the viewer's plane and wait until it has painted a slice of it."""
    option = page.locator(".lsv-planes").get_by_role("radio", name=PLANE_LABELS[plane])
    if option.get_attribute("aria-checked") != "true":
        option.click()
    _wait_for_viewer(page, plane)


def _wait_for_viewer(page, plane: str | None = None) -> None:
    """Wait until one viewer is left (a rerun keeps the old one, marked stale, until it ends) and it shows ``plane``."""
    page.wait_for_function("([selector, plane]) => { const canvases = document.querySelectorAll(selector);"
                           " return document.querySelectorAll('.lsv').length === 1 && canvases.length === 1"
                           " && canvases[0].dataset.slice && (!plane || canvases[0].dataset.plane === plane); }",
                           arg=[SLICE_CANVAS, plane])


def hover_readout(page) -> str:
    """Hover over the middle of the slice picture; the readout the viewer shows there."""
    canvas = page.locator(SLICE_CANVAS)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    for offset in (0, 3):  # the readout follows mouse moves, so make sure there is one over the picture
        page.mouse.move(box["x"] + box["width"] / 2 + offset, box["y"] + box["height"] / 2)
    readout = page.locator(".lsv-active .lsv-readout")
    readout.wait_for()
    return readout.inner_text()


def choose_lesion(page, row: int, across: float = 0.6) -> None:
    """Click the lesion table's ``row`` (from 0) at ``across`` of its width; the table is drawn on a canvas."""
    table = page.get_by_test_id("stDataFrame").first
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    jump = page.evaluate("() => globalThis.__liversegViewer.jump")
    for _ in range(2):  # the grid, just scrolled into view, sometimes takes its first click as focus only
        table.click(position={"x": box["width"] * across, "y": ROW_PX * (row + 1.5)})  # below the header row
        try:
            page.wait_for_function("jump => globalThis.__liversegViewer.jump !== jump", arg=jump, timeout=5000)
            _wait_for_viewer(page)  # and the page's rerun has ended
            return
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: click again
            continue


def _timed(page, action) -> float:
    page.evaluate(_ARM, [SLICE_CANVAS, "data-slice"])
    action()
    return page.evaluate("() => window.__painted")


def move_slice(page, key: str = "ArrowRight") -> float:
    """Press ``key`` over the viewer (focused as a click on it would); milliseconds until the new slice was painted."""
    viewer = page.locator(".lsv")
    viewer.focus()
    return _timed(page, lambda: viewer.press(key))


def picture_centre(page) -> tuple[float, float]:
    """The middle of the picture on screen (scrolled into view), in page pixels."""
    canvas = page.locator(SLICE_CANVAS)
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _over_picture(page) -> None:
    page.mouse.move(*picture_centre(page))



def wheel_slice(page, delta_y: float = 100) -> float:
    """Turn the mouse wheel over the picture by ``delta_y`` (one notch is 100); milliseconds until the new slice was painted."""
    _over_picture(page)
    return _timed(page, lambda: page.mouse.wheel(0, delta_y))


def wheel_burst(page, notches: int, delta_y: float = 100) -> None:
    """Turn the wheel over the picture ``notches`` times as fast as the browser takes events, waiting for no paint."""
    _over_picture(page)
    for _ in range(notches):
        page.mouse.wheel(0, delta_y)


def step_slice(page, button: str = "Next") -> float:
    """Click the viewer's Back or Next button; milliseconds until the new slice was painted."""
    return _timed(page, lambda: page.locator(".lsv").get_by_role("button", name=button).click())


def drag_slider(page, number: int) -> float:
    """Put the slider on slice ``number`` as a drag ending there would; milliseconds until it was painted."""
    slider = slice_slider(page)
    return _timed(page, lambda: slider.fill(str(number)))


def count_reruns(page) -> None:
    """From now on, count the page's reruns (``reruns``)."""
    page.evaluate(_COUNT_RERUNS)


def reruns(page) -> int:
    return page.evaluate("() => window.__reruns")


def pane_canvas(plane: str) -> str:
    """The selector of a plane's canvas (shown when that plane is chosen, or in the three-plane layout)."""
    return f'.lsv-pane[data-plane="{plane}"] canvas'


def display_change(page, action, selector: str = SLICE_CANVAS) -> float:
    """Do ``action`` (an input that changes the picture on ``selector``); milliseconds until the viewer has painted it."""
    page.evaluate(_ARM, [selector, "data-paints"])
    action()
    return page.evaluate("() => window.__painted")


def pixel(page, x: float = 0.5, y: float = 0.5, selector: str = SLICE_CANVAS) -> list[int]:
    """The RGB the viewer has painted at a point of its canvas (fractions of its width and height)."""
    return page.evaluate("""([selector, x, y]) => { const canvas = document.querySelector(selector);
        return Array.from(canvas.getContext('2d').getImageData(Math.floor(x * canvas.width), Math.floor(y * canvas.height), 1, 1)
        .data.slice(0, 3)); }""", [selector, x, y])


def picture(page, selector: str = SLICE_CANVAS) -> str:
    """A fingerprint of the whole painted picture (its PNG data URL), to tell pictures apart."""
    return page.evaluate("selector => document.querySelector(selector).toDataURL()", selector)


def choose_window(page, preset: str) -> float:
    """Pick a window preset; milliseconds until painted."""
    return display_change(page, lambda: page.locator(".lsv-window").select_option(preset))


def drag_window(page, dx: float, dy: float) -> float:
    """Right-drag over the picture by (dx, dy) pixels; milliseconds until the first new window was painted."""
    x, y = picture_centre(page)
    page.mouse.move(x, y)

    def drag():
        page.mouse.down(button="right")
        page.mouse.move(x + dx, y + dy, steps=4)
        page.mouse.up(button="right")
    return display_change(page, drag)


def set_opacity(page, value: float) -> float:
    return display_change(page, lambda: page.locator(".lsv-opacity").fill(str(value)))


def toggle_layer(page, name: str) -> float:
    """Click the viewer's checkbox ``name`` (Liver, Lesions, Reference outlines); milliseconds until painted."""
    return display_change(page, lambda: page.locator(".lsv-layers").get_by_label(name, exact=True).click())


def zoom(page, delta_y: float = -300) -> float:
    """Ctrl+wheel over the middle of the picture (negative: in); milliseconds until painted."""
    _over_picture(page)

    def turn():
        page.keyboard.down("Control")
        page.mouse.wheel(0, delta_y)
        page.keyboard.up("Control")
    return display_change(page, turn)
