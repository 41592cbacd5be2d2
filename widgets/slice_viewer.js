// The Segment page's viewer: the CT and its labels arrive once as raw voxels (core/viewing/viewer_volume.py,
// through the small "pack" component below), and every picture is drawn here: the plane cut from the
// volume, windowed through a lookup table, coloured by the labels, zoomed and panned on a canvas.
// So no display change (plane, window, overlay, opacity, zoom, slice) asks the server, and the page
// never reruns for one.
//
// Streamlit calls the viewer again whenever the page sends new data (a jump to a lesion, another
// reference). What the user set (slices, window, zoom, layers) survives that, and a reload, kept per
// browser tab below, unless the page asks for a jump with a new `jump` token.

// Shared with slice_viewer_pack.js, which receives the packs.
const shared = (globalThis.__liversegViewer ??= { packs: {}, waiting: {}, state: null, jump: null, ct: null });
// A reload of the page keeps the result (ui/sign_ins.py), and so what the user set here: kept in this tab's
// sessionStorage as the page goes away, taken up again below when the same scan and jump come back.
const KEPT = "liverseg-viewer";
if (!shared.state) {
  try {
    Object.assign(shared, JSON.parse(sessionStorage.getItem(KEPT)) ?? {});
  } catch { /* nothing kept, or unreadable: start afresh */ }
  addEventListener("pagehide", () => sessionStorage.setItem(KEPT, JSON.stringify({ state: shared.state, jump: shared.jump, ct: shared.ct })));
}
const AXES = { axial: [0, 1, 2], coronal: [0, 2, 1], sagittal: [1, 2, 0] }; // screen horizontal, vertical, through (canonical R, A, S)
const PLANES = ["axial", "coronal", "sagittal"];
const NAMES = ["none", "liver", "lesion"];
const WORDS = ["", "liver", "lesion"];
const NOTCH_PX = 40; // wheel travel per slice; a mouse notch is 53-120 px, a touchpad sends a few px at a time
const CLICK_PX = 4; // a press that moves less than this is a click (crosshair), more is a drag (pan)
const WINDOW_HU_PER_PX = 2; // window drag: HU of width (right) or level (down) per pixel

// A pack's voxels, once slice_viewer_pack.js has them (the pack's element may be drawn after this one).
function pack(id) {
  if (shared.packs[id]) return shared.packs[id];
  return (shared.waiting[id] ??= (() => {
    let resolve;
    const promise = new Promise((done) => { resolve = done; });
    promise.resolve = resolve;
    return promise;
  })());
}

function lookup(ct, width, level) {
  const [low] = ct.header.huRange;
  const table = new Uint8ClampedArray(ct.header.huRange[1] - low + 1);
  const bottom = level - width / 2;
  for (let n = 0; n < table.length; n++) table[n] = ((n + low - bottom) * 255) / Math.max(width, 1);
  return table;
}

export default function ({ data, parentElement }) {
  const root = parentElement.querySelector(".lsv");
  const done = new AbortController();
  const on = (target, type, handler, options = {}) => target.addEventListener(type, handler, { ...options, signal: done.signal });
  const q = (selector) => root.querySelector(selector);
  const presets = data.presets;
  const fresh = () => ({
    pos: data.focus.slice(), plane: "axial", three: false, preset: data.preset, width: presets[data.preset][0],
    level: presets[data.preset][1], opacity: data.opacity, liver: true, lesions: true, reference: true, compare: "result",
    measuring: false, views: {},
  });
  if (shared.ct !== data.ct) { // another scan: nothing of the last one's settings applies
    shared.ct = data.ct;
    shared.state = fresh();
  }
  const state = shared.state;
  if (shared.jump !== data.jump) { // a new result or a lesion picked: every plane goes to the point
    shared.jump = data.jump;
    state.pos = data.focus.slice();
  }
  let ct = null;
  let labels = null;
  let table = null;
  const panes = {};

  // --- the controls: written from the state, changing it, never the server
  const windowSelect = q(".lsv-window");
  windowSelect.replaceChildren(...[...Object.keys(presets), "Custom"].map((name) => new Option(name, name)));
  const colours = q(".lsv-compare");
  colours.hidden = !data.hasReference;
  q(".lsv-toggle-reference").hidden = !data.hasReference;

  function syncControls() {
    root.querySelectorAll(".lsv-planes button").forEach((button) => {
      button.setAttribute("aria-checked", String(button.dataset.plane === state.plane));
    });
    windowSelect.value = state.preset;
    q(".lsv-wl").textContent = `W ${Math.round(state.width)} / L ${Math.round(state.level)} HU`;
    q(".lsv-opacity").value = String(state.opacity);
    q(".lsv-three input").checked = state.three;
    for (const layer of ["liver", "lesions", "reference"]) {
      const input = q(`.lsv-toggle-${layer} input`);
      input.checked = state[layer];
      input.disabled = state.compare !== "result";
    }
    colours.querySelector("select").value = state.compare;
    q(".lsv-measure").setAttribute("aria-pressed", String(state.measuring));
    root.classList.toggle("lsv-measuring", state.measuring);
    root.classList.toggle("lsv-show-three", state.three);
    legend();
  }

  function legend() {
    const entries = state.compare !== "result" ? data.legend[`agreement_${state.compare}`]
      : [...(state.liver ? data.legend.liver : []), ...(state.lesions ? data.legend.lesions : []),
        ...(state.reference && data.hasReference ? data.legend.reference : [])];
    q(".lsv-legend").replaceChildren(...entries.map(([rgb, words, outline]) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style[outline ? "border" : "background"] = outline ? `3px solid rgb(${rgb})` : `rgb(${rgb})`;
      item.append(swatch, words);
      return item;
    }));
  }

  // --- panes: one per plane; one shown, or all three side by side on a wide screen
  for (const element of root.querySelectorAll(".lsv-pane")) {
    const plane = element.dataset.plane;
    const canvas = element.querySelector("canvas");
    const view = (state.views[plane] ??= { zoom: 1, panX: 0, panY: 0, measure: null });
    panes[plane] = { plane, element, canvas, context: canvas.getContext("2d"), stage: element.querySelector(".lsv-stage"),
      readout: element.querySelector(".lsv-readout"), image: null, pixels: null, codes: null, view, composed: false, scheduled: false };
    element.querySelectorAll(".lsv-edge").forEach((edge, n) => { edge.textContent = data.letters[plane][n]; });
  }
  const visible = () => (state.three && root.classList.contains("lsv-wide") ? PLANES : [state.plane]).map((plane) => panes[plane]);

  function geometry(plane) {
    const [h, v, t] = AXES[plane];
    const shape = ct.header.shape;
    return { h, v, t, cols: shape[h], rows: shape[v], count: shape[t], colMm: ct.header.spacingMm[h], rowMm: ct.header.spacingMm[v] };
  }

  // Draw the slice at native resolution into the pane's image: grey from the lookup table, then the colours.
  function compose(pane) {
    const g = geometry(pane.plane);
    const shape = ct.header.shape;
    const strides = [shape[1] * shape[2], shape[2], 1];
    if (!pane.image || pane.image.width !== g.cols || pane.image.height !== g.rows) {
      pane.image = new OffscreenCanvas(g.cols, g.rows);
      pane.pixels = new ImageData(g.cols, g.rows);
      pane.codes = new Uint8Array(g.cols * g.rows);
    }
    const out = pane.pixels.data;
    const codes = pane.codes;
    const low = ct.header.huRange[0];
    const base = state.pos[g.t] * strides[g.t];
    const hu = ct.voxels;
    const marks = labels?.voxels;
    for (let r = 0; r < g.rows; r++) {
      const rowBase = base + (g.rows - 1 - r) * strides[g.v];
      for (let c = 0; c < g.cols; c++) {
        const index = rowBase + (g.cols - 1 - c) * strides[g.h];
        const at = r * g.cols + c;
        const grey = table[hu[index] - low];
        out[4 * at] = out[4 * at + 1] = out[4 * at + 2] = grey;
        out[4 * at + 3] = 255;
        codes[at] = marks ? marks[index] : 0;
      }
    }
    if (marks) colour(g, out, codes);
    pane.image.getContext("2d").putImageData(pane.pixels, 0, 0);
    pane.composed = true;
  }

  function colour(g, out, codes) {
    const a = state.opacity;
    const fill = (at, rgb) => {
      out[4 * at] = out[4 * at] * (1 - a) + rgb[0] * a;
      out[4 * at + 1] = out[4 * at + 1] * (1 - a) + rgb[1] * a;
      out[4 * at + 2] = out[4 * at + 2] * (1 - a) + rgb[2] * a;
    };
    const set = (at, rgb) => { out[4 * at] = rgb[0]; out[4 * at + 1] = rgb[1]; out[4 * at + 2] = rgb[2]; };
    const rgb = data.colours;
    const reference = (at) => Math.floor(codes[at] / 3);
    // The reference's outline: inside the mask, next to a pixel outside it (or the edge), as core.viewing.slices.outline.
    const edge = (at, r, c, inside) => inside(at) && (r === 0 || c === 0 || r === g.rows - 1 || c === g.cols - 1
      || !inside(at - 1) || !inside(at + 1) || !inside(at - g.cols) || !inside(at + g.cols));
    const refLiver = (at) => reference(at) >= 1;
    const refLesion = (at) => reference(at) === 2;
    for (let r = 0, at = 0; r < g.rows; r++) {
      for (let c = 0; c < g.cols; c++, at++) {
        const code = codes[at];
        if (code === 0) continue;
        const model = code % 3;
        if (state.compare !== "result") {
          const lesion = state.compare === "lesion";
          const found = lesion ? model === 2 : model >= 1;
          const truth = lesion ? refLesion(at) : refLiver(at);
          if (found && truth) fill(at, rgb.agree);
          else if (found) fill(at, rgb.modelOnly);
          else if (truth) fill(at, rgb.missed);
          continue;
        }
        if (model === 1 && state.liver) fill(at, rgb.liver);
        else if (model === 2 && state.lesions) fill(at, rgb.lesion);
        if (data.hasReference && state.reference) {
          if (edge(at, r, c, refLesion)) set(at, rgb.referenceLesion);
          else if (edge(at, r, c, refLiver)) set(at, rgb.referenceLiver);
        }
      }
    }
  }

  // The slice's place on the pane (CSS pixels): centred, fitted, then zoomed and panned.
  function placement(pane) {
    const g = geometry(pane.plane);
    const width = pane.stage.clientWidth;
    const height = pane.stage.clientHeight;
    const fit = Math.min(width / (g.cols * g.colMm), height / (g.rows * g.rowMm));
    const scale = fit * pane.view.zoom; // CSS pixels per mm
    const x = width / 2 + pane.view.panX - (g.cols * g.colMm * scale) / 2;
    const y = height / 2 + pane.view.panY - (g.rows * g.rowMm * scale) / 2;
    return { g, x, y, sx: g.colMm * scale, sy: g.rowMm * scale, width, height }; // sx, sy: CSS pixels per voxel
  }

  function toVoxel(pane, event) {
    const box = pane.stage.getBoundingClientRect();
    const p = placement(pane);
    return { c: (event.clientX - box.left - p.x) / p.sx, r: (event.clientY - box.top - p.y) / p.sy, g: p.g };
  }

  function draw(pane) {
    const p = placement(pane);
    const ratio = window.devicePixelRatio || 1;
    const { canvas, context } = pane;
    if (canvas.width !== Math.round(p.width * ratio) || canvas.height !== Math.round(p.height * ratio)) {
      canvas.width = Math.round(p.width * ratio);
      canvas.height = Math.round(p.height * ratio);
    }
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.fillStyle = "#000";
    context.fillRect(0, 0, p.width, p.height);
    context.imageSmoothingEnabled = pane.view.zoom < 3; // zoomed in far, show the voxels as they are
    context.drawImage(pane.image, p.x, p.y, p.g.cols * p.sx, p.g.rows * p.sy);
    if (state.three) { // the crosshair: where the other planes cut this one
      const cx = p.x + (p.g.cols - 1 - state.pos[p.g.h] + 0.5) * p.sx;
      const cy = p.y + (p.g.rows - 1 - state.pos[p.g.v] + 0.5) * p.sy;
      context.strokeStyle = "rgba(255, 213, 79, 0.7)";
      context.lineWidth = 1;
      context.beginPath();
      context.moveTo(cx, 0); context.lineTo(cx, p.height);
      context.moveTo(0, cy); context.lineTo(p.width, cy);
      context.stroke();
    }
    const line = pane.view.measure;
    if (line && line.slice === state.pos[p.g.t]) {
      const [x0, y0, x1, y1] = [p.x + line.c0 * p.sx, p.y + line.r0 * p.sy, p.x + line.c1 * p.sx, p.y + line.r1 * p.sy];
      context.strokeStyle = "#ffd54f";
      context.lineWidth = 2;
      context.beginPath(); context.moveTo(x0, y0); context.lineTo(x1, y1); context.stroke();
      context.font = "bold 14px sans-serif";
      context.fillStyle = "#ffd54f";
      context.fillText(`${line.mm.toFixed(1)} mm`, x1 + 6, y1 - 6);
    }
    canvas.dataset.plane = pane.plane; // what is on screen, for tests and the latency benchmark
    canvas.dataset.slice = String(state.pos[p.g.t] + 1);
    canvas.dataset.paints = String(Number(canvas.dataset.paints || 0) + 1);
  }

  function paint(pane) {
    pane.scheduled = false;
    if (!ct || !table) return;
    if (!pane.composed) compose(pane);
    draw(pane);
  }

  // compose: the slice's pixels changed (slice, window, layers); otherwise only its place (zoom, pan).
  function refresh(which = visible(), recompose = true) {
    for (const pane of which) {
      if (recompose) pane.composed = false;
      if (!pane.scheduled) {
        pane.scheduled = true;
        requestAnimationFrame(() => paint(pane));
      }
    }
  }

  function layout() {
    const shown = visible();
    for (const plane of PLANES) {
      panes[plane].element.hidden = !shown.includes(panes[plane]);
      panes[plane].element.classList.toggle("lsv-active", plane === state.plane);
    }
    refresh(shown);
  }

  const slider = q(".lsv-slider");
  const caption = q(".lsv-caption");
  function describeSlice() {
    if (!ct) return;
    const g = geometry(state.plane);
    const index = state.pos[g.t];
    slider.max = String(g.count);
    slider.value = String(index + 1);
    const mm = ct.header.originMm[g.t] + index * ct.header.deltaMm[g.t];
    caption.textContent = `${data.titles[state.plane]}, slice ${index + 1} of ${g.count} (${"RAS"[g.t]} = ${mm.toFixed(1)} mm)`;
    root.dataset.slice = String(index + 1);
  }

  function show(next, plane = state.plane) {
    const g = geometry(plane);
    state.pos[g.t] = Math.min(Math.max(next, 0), g.count - 1);
    describeSlice();
    // This plane's picture changes; in the three-plane layout the others' crosshair moves too.
    refresh(visible(), true);
  }

  function setWindow(width, level, preset = "Custom") {
    state.width = Math.max(1, width);
    state.level = level;
    state.preset = preset;
    table = lookup(ct, state.width, state.level);
    syncControls();
    refresh();
  }

  function describe(pane, event) {
    const { readout } = pane;
    if (!ct) return;
    const { c, r, g } = toVoxel(pane, event);
    if (c < 0 || r < 0 || c >= g.cols || r >= g.rows) {
      readout.hidden = true;
      return;
    }
    const voxel = [];
    voxel[g.h] = g.cols - 1 - Math.floor(c);
    voxel[g.v] = g.rows - 1 - Math.floor(r);
    voxel[g.t] = state.pos[g.t];
    const shape = ct.header.shape;
    const index = (voxel[0] * shape[1] + voxel[1]) * shape[2] + voxel[2];
    const position = voxel.map((n, axis) => ct.header.originMm[axis] + n * ct.header.deltaMm[axis]);
    const code = labels ? labels.voxels[index] : 0;
    const model = code % 3;
    const reference = Math.floor(code / 3);
    const words = !data.hasReference || model === reference ? WORDS[model] : `model: ${NAMES[model]}, reference: ${NAMES[reference]}`;
    readout.textContent = "";
    readout.append(`${ct.voxels[index]} HU`, document.createElement("br"), `(${position.map((mm) => mm.toFixed(1)).join(", ")}) mm RAS`);
    if (words) {
      const label = document.createElement("b");
      label.textContent = words;
      readout.append(document.createElement("br"), label);
    }
    readout.hidden = false;
  }

  function zoomAt(pane, factor, clientX, clientY) {
    const box = pane.stage.getBoundingClientRect();
    const view = pane.view;
    const next = Math.min(Math.max(view.zoom * factor, 1), 20);
    const applied = next / view.zoom;
    // Keep the point under the cursor (or the fingers) where it is.
    const sx = clientX - box.left - box.width / 2;
    const sy = clientY - box.top - box.height / 2;
    view.panX = sx - (sx - view.panX) * applied;
    view.panY = sy - (sy - view.panY) * applied;
    view.zoom = next;
    root.dataset.zoom = next.toFixed(2);
    refresh([pane], false);
  }

  // --- the pointer on a pane: click = crosshair, drag = pan, right/Shift drag = window, Measure = a line in mm
  for (const pane of Object.values(panes)) {
    const pointers = new Map();
    let press = null;
    on(pane.stage, "contextmenu", (event) => event.preventDefault());
    on(pane.stage, "pointerdown", (event) => {
      root.focus({ preventScroll: true });
      if (state.plane !== pane.plane) {
        state.plane = pane.plane;
        syncControls();
        layout();
        describeSlice();
      }
      pane.stage.setPointerCapture(event.pointerId);
      pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
      if (pointers.size === 2) {
        press = { mode: "pinch", zoom: pane.view.zoom };
        return;
      }
      const mode = event.button === 2 || event.shiftKey ? "window" : state.measuring ? "measure" : "pan";
      press = { mode, x: event.clientX, y: event.clientY, moved: false, width: state.width, level: state.level,
        panX: pane.view.panX, panY: pane.view.panY };
      if (mode === "measure") {
        const { c, r } = toVoxel(pane, event);
        pane.view.measure = null;
        press.start = { c, r };
      }
      event.preventDefault();
    });
    on(pane.stage, "pointermove", (event) => {
      if (!press) {
        describe(pane, event);
        return;
      }
      const last = pointers.get(event.pointerId);
      if (press.mode === "pinch" && last) {
        const [a, b] = [...pointers.values()];
        const before = Math.hypot(a.x - b.x, a.y - b.y);
        last.x = event.clientX;
        last.y = event.clientY;
        const [c, d] = [...pointers.values()];
        const after = Math.hypot(c.x - d.x, c.y - d.y);
        if (before > 0) zoomAt(pane, after / before, (c.x + d.x) / 2, (c.y + d.y) / 2);
        return;
      }
      const dx = event.clientX - press.x;
      const dy = event.clientY - press.y;
      press.moved ||= Math.hypot(dx, dy) >= CLICK_PX;
      if (!press.moved) return;
      if (press.mode === "window") {
        setWindow(press.width + dx * WINDOW_HU_PER_PX, press.level + dy * WINDOW_HU_PER_PX);
      } else if (press.mode === "pan") {
        pane.view.panX = press.panX + dx;
        pane.view.panY = press.panY + dy;
        refresh([pane], false);
      } else if (press.mode === "measure") {
        const { c, r, g } = toVoxel(pane, event);
        const mm = Math.hypot((c - press.start.c) * g.colMm, (r - press.start.r) * g.rowMm);
        pane.view.measure = { c0: press.start.c, r0: press.start.r, c1: c, r1: r, mm, slice: state.pos[g.t] };
        q(".lsv-distance").textContent = `Distance: ${mm.toFixed(1)} mm`;
        refresh([pane], false);
      }
    });
    const release = (event) => {
      pointers.delete(event.pointerId);
      if (!press) return;
      if (press.mode === "pan" && !press.moved && event.type === "pointerup") {
        // A click: the crosshair goes there, and every other plane shows the slice through it.
        const { c, r, g } = toVoxel(pane, event);
        if (c >= 0 && r >= 0 && c < g.cols && r < g.rows) {
          state.pos[g.h] = g.cols - 1 - Math.floor(c);
          state.pos[g.v] = g.rows - 1 - Math.floor(r);
          root.dataset.point = state.pos.join(",");
          refresh(Object.values(panes).filter((other) => !other.element.hidden));
        }
      }
      press = pointers.size ? press : null;
    };
    on(pane.stage, "pointerup", release);
    on(pane.stage, "pointercancel", release);
    on(pane.stage, "mouseleave", () => { pane.readout.hidden = true; });
    let wheel = 0;
    on(pane.stage, "wheel", (event) => {
      event.preventDefault(); // the wheel scrolls slices (or zooms, with Ctrl or a pinch) here, not the page
      if (event.ctrlKey) { // Ctrl+wheel, or a touchpad's pinch (which Chromium sends as Ctrl+wheel)
        zoomAt(pane, Math.exp(-event.deltaY * 0.002), event.clientX, event.clientY);
        return;
      }
      const px = event.deltaY * ({ 1: 33, 2: 800 }[event.deltaMode] ?? 1);
      let steps;
      if (Math.abs(px) >= NOTCH_PX) { // a mouse wheel's notch: one slice (more for a large jump)
        steps = Math.sign(px) * Math.max(1, Math.round(Math.abs(px) / 100));
        wheel = 0;
      } else { // a touchpad's small deltas add up
        wheel += px;
        steps = Math.trunc(wheel / NOTCH_PX);
        wheel -= steps * NOTCH_PX;
      }
      if (state.plane !== pane.plane) {
        state.plane = pane.plane;
        syncControls();
        layout();
      }
      if (steps) show(state.pos[AXES[pane.plane][2]] + steps, pane.plane);
      describe(pane, event);
    }, { passive: false });
  }

  // --- the controls
  const current = () => state.pos[AXES[state.plane][2]];
  on(slider, "input", () => show(Number(slider.value) - 1));
  on(q(".lsv-back"), "click", () => show(current() - 1));
  on(q(".lsv-next"), "click", () => show(current() + 1));
  on(root, "keydown", (event) => {
    if (event.target !== root) return; // the slider and the buttons move themselves
    const moves = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: 10, PageDown: -10 };
    if (event.key in moves) show(current() + moves[event.key]);
    else if (event.key === "Home") show(0);
    else if (event.key === "End") show(Number(slider.max) - 1);
    else return;
    event.preventDefault();
  });
  root.querySelectorAll(".lsv-planes button").forEach((button) => on(button, "click", () => {
    state.plane = button.dataset.plane;
    syncControls();
    layout();
    describeSlice();
  }));
  on(windowSelect, "change", () => {
    if (windowSelect.value in presets) setWindow(...presets[windowSelect.value], windowSelect.value);
  });
  on(q(".lsv-opacity"), "input", (event) => {
    state.opacity = Number(event.target.value);
    refresh();
  });
  for (const layer of ["liver", "lesions", "reference"]) {
    on(q(`.lsv-toggle-${layer} input`), "change", (event) => {
      state[layer] = event.target.checked;
      syncControls();
      refresh();
    });
  }
  on(colours.querySelector("select"), "change", (event) => {
    state.compare = event.target.value;
    syncControls();
    refresh();
  });
  on(q(".lsv-three input"), "change", (event) => {
    state.three = event.target.checked;
    syncControls();
    layout();
  });
  on(q(".lsv-measure"), "click", () => {
    state.measuring = !state.measuring;
    syncControls();
  });
  on(q(".lsv-reset"), "click", () => {
    for (const pane of Object.values(panes)) Object.assign(pane.view, { zoom: 1, panX: 0, panY: 0, measure: null });
    q(".lsv-distance").textContent = "";
    root.dataset.zoom = "1.00";
    setWindow(...presets[data.preset], data.preset);
  });

  const resize = new ResizeObserver(() => {
    root.classList.toggle("lsv-wide", root.clientWidth >= 680); // three planes side by side need room (220 px each)
    layout();
  });
  resize.observe(root);
  syncControls();
  q(".lsv-note").textContent = "Loading the scan…";
  Promise.all([pack(data.ct), pack(data.labels)]).then(([scan, marks]) => {
    if (done.signal.aborted) return;
    ct = scan;
    labels = marks;
    state.pos = state.pos.map((n, axis) => Math.min(Math.max(n, 0), ct.header.shape[axis] - 1));
    table = lookup(ct, state.width, state.level);
    q(".lsv-note").textContent = ct.header.step > 1
      ? `Shown with one voxel in ${ct.header.step} along the picture's sides, so that your browser can hold the whole scan; `
        + "measurements and downloads use the full resolution." : "";
    describeSlice();
    layout();
  });
  return () => {
    done.abort();
    resize.disconnect();
  };
}
