// The Segment page's slice viewer: a plane's slices arrive once (core/viewing/slice_stack.py), then the
// slider, the step buttons, the arrow keys and the mouse wheel change the slice here, in the
// browser, without asking the server. Every move changes the slice number at once; painting
// follows on the next animation frame and always draws the newest number, so a burst of wheel
// events ends on the right slice and no move is lost.
//
// Streamlit calls this function again whenever the page sends new data (another plane, window or
// overlay). The slice shown per plane survives that (kept per browser tab below) unless the page
// asks for a jump (a new result, a lesion picked in the table) with a new `jump` token.

const memory = (globalThis.__liversegSliceViewer ??= { jump: null, slices: {}, stackId: null, images: null, hover: null });
const NAMES = ["none", "liver", "lesion"];
const WORDS = ["", "liver", "lesion"];
const NOTCH_PX = 40; // wheel travel per slice; a mouse notch is 53-120 px, a touchpad sends a few px at a time

function decodeHover(base64, shape) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  const cells = shape[0] * shape[1] * shape[2];
  return new Response(stream).arrayBuffer().then((buffer) => ({
    hu: new Int16Array(buffer, 0, cells),
    labels: new Uint8Array(buffer, 2 * cells, cells),
  }));
}

export default function ({ data, parentElement }) {
  const root = parentElement.querySelector(".lsv");
  const stage = root.querySelector(".lsv-stage");
  const frame = root.querySelector(".lsv-frame");
  const canvas = root.querySelector("canvas");
  const slider = root.querySelector(".lsv-slider");
  const caption = root.querySelector(".lsv-caption");
  const readout = root.querySelector(".lsv-readout");
  const context = canvas.getContext("2d");
  const count = data.images.length;
  const done = new AbortController();
  const on = (target, type, handler, options = {}) => target.addEventListener(type, handler, { ...options, signal: done.signal });

  if (memory.stackId !== data.id) {
    memory.stackId = data.id;
    memory.images = data.images.map((source) => {
      const image = new Image();
      image.src = source;
      return image;
    });
    memory.hover = decodeHover(data.hover, data.hoverShape);
    memory.images.forEach((image) => image.decode().catch(() => {})); // decode ahead, so that scrolling only draws
  }
  if (memory.jump !== data.jump) {
    memory.jump = data.jump;
    memory.slices = {};
  }
  const images = memory.images;
  let hover = null;
  memory.hover.then((grid) => { hover = grid; });
  let index = Math.min(Math.max(memory.slices[data.plane] ?? data.slice, 0), count - 1);
  let scheduled = false;
  let wheel = 0;

  canvas.width = data.width;
  canvas.height = data.height;
  root.querySelectorAll(".lsv-edge").forEach((edge, n) => { edge.textContent = data.letters[n]; });
  slider.max = String(count);

  function fit() {
    const scale = Math.min(stage.clientWidth / data.width, stage.clientHeight / data.height);
    frame.style.width = `${Math.floor(data.width * scale)}px`;
    frame.style.height = `${Math.floor(data.height * scale)}px`;
  }

  function paint() {
    scheduled = false;
    const shown = index;
    const image = images[shown];
    if (!image.complete || image.naturalWidth === 0) {
      image.decode().then(schedule, schedule);
      return;
    }
    context.drawImage(image, 0, 0, data.width, data.height);
    canvas.dataset.plane = data.plane; // what is on screen, for tests and the latency benchmark
    canvas.dataset.slice = String(shown + 1);
  }

  function schedule() {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(paint);
    }
  }

  function show(next) {
    index = Math.min(Math.max(next, 0), count - 1);
    memory.slices[data.plane] = index;
    slider.value = String(index + 1);
    const axis = "RAS"[data.axes[2]];
    caption.textContent = `${data.title}, slice ${index + 1} of ${count} (${axis} = ${data.throughMm[index].toFixed(1)} mm)`;
    root.dataset.slice = String(index + 1);
    schedule();
  }

  function describe(event) {
    const box = canvas.getBoundingClientRect();
    const [slices, rows, cols] = data.hoverShape;
    const x = (event.clientX - box.left) / box.width;
    const y = (event.clientY - box.top) / box.height;
    if (!hover || x < 0 || x >= 1 || y < 0 || y >= 1) {
      readout.hidden = true;
      return;
    }
    const step = data.hoverStep;
    const col = Math.min(Math.floor((x * data.nativeShape[1]) / step), cols - 1);
    const row = Math.min(Math.floor((y * data.nativeShape[0]) / step), rows - 1);
    const cell = (index * rows + row) * cols + col;
    const position = [];
    position[data.axes[0]] = data.origin[0] + (col * step + Math.floor(step / 2)) * data.delta[0];
    position[data.axes[1]] = data.origin[1] + (row * step + Math.floor(step / 2)) * data.delta[1];
    position[data.axes[2]] = data.throughMm[index];
    const code = hover.labels[cell];
    const model = code % 3;
    const reference = Math.floor(code / 3);
    const words = !data.hasReference || model === reference ? WORDS[model] : `model: ${NAMES[model]}, reference: ${NAMES[reference]}`;
    readout.textContent = "";
    readout.append(`${hover.hu[cell]} HU`, document.createElement("br"), `(${position.map((mm) => mm.toFixed(1)).join(", ")}) mm RAS`);
    if (words) {
      const label = document.createElement("b");
      label.textContent = words;
      readout.append(document.createElement("br"), label);
    }
    readout.hidden = false;
  }

  on(slider, "input", () => show(Number(slider.value) - 1));
  on(root.querySelector(".lsv-back"), "click", () => show(index - 1));
  on(root.querySelector(".lsv-next"), "click", () => show(index + 1));
  on(root, "keydown", (event) => {
    if (event.target === slider) return; // the slider moves itself and says so with an input event
    const moves = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: 10, PageDown: -10 };
    if (event.key in moves) show(index + moves[event.key]);
    else if (event.key === "Home") show(0);
    else if (event.key === "End") show(count - 1);
    else return;
    event.preventDefault();
  });
  on(stage, "wheel", (event) => {
    event.preventDefault(); // the wheel scrolls slices here, not the page
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
    if (steps) show(index + steps);
    describe(event);
  }, { passive: false });
  on(stage, "pointerdown", () => root.focus({ preventScroll: true }));
  on(canvas, "mousemove", describe);
  on(canvas, "mouseleave", () => { readout.hidden = true; });
  const resize = new ResizeObserver(fit);
  resize.observe(stage);
  fit();
  show(index);
  return () => {
    done.abort();
    resize.disconnect();
  };
}
