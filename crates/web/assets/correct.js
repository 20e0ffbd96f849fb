// Correcting a morphology mask: paint classes with a brush over the image, undo/redo,
// save as a new version beside the original. The mask travels as runs of class indices
// ([class, count, ...]; 0 background ... 4 rbc, 255 unlabelled). No framework.
"use strict";
const UNLABELLED = 255;
const UNLABELLED_COLOUR = [128, 128, 128, 150];

let mask = null;      // what /api/masks/{stem} said
let values = null;    // Uint8Array, the classes being painted
let savedValues = null;
let colours = [];     // class index -> [r, g, b, a]
let selected = 1;     // nucleus
let undoStack = [], redoStack = [];
let stroke = null;    // {indices, before, seen, last}
let ctx = null, pixels = null;

function decodeRuns(runs, n) {
  const out = new Uint8Array(n);
  let at = 0;
  for (let i = 0; i < runs.length; i += 2) { out.fill(runs[i], at, at + runs[i + 1]); at += runs[i + 1]; }
  return out;
}

function encodeRuns(v) {
  const runs = [];
  let i = 0;
  while (i < v.length) {
    let j = i + 1;
    while (j < v.length && v[j] === v[i]) j++;
    runs.push(v[i], j - i);
    i = j;
  }
  return runs;
}

function colourOf(v) { return v === UNLABELLED ? UNLABELLED_COLOUR : colours[v]; }

function drawPixel(i) {
  const c = colourOf(values[i]);
  pixels.data.set(c, 4 * i);
}

function redraw() {
  for (let i = 0; i < values.length; i++) drawPixel(i);
  ctx.putImageData(pixels, 0, 0);
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "status error" : "status";
}

function unsaved() {
  if (!savedValues) return false;
  for (let i = 0; i < values.length; i++) if (values[i] !== savedValues[i]) return true;
  return false;
}

function updateButtons() {
  $("undo").disabled = undoStack.length === 0;
  $("redo").disabled = redoStack.length === 0;
}

function select(index) {
  const c = mask.classes[index];
  if (!c || !c.paintable) return;
  selected = index;
  for (const b of document.querySelectorAll("#classes button")) b.classList.toggle("active", Number(b.dataset.class) === index);
}

function setPixel(i) {
  if (values[i] === selected) return;
  if (!stroke.seen.has(i)) { stroke.seen.add(i); stroke.indices.push(i); stroke.before.push(values[i]); }
  values[i] = selected;
  drawPixel(i);
}

// A disc of the brush's diameter (in mask pixels) around (x, y), by pixel centres.
function stamp(x, y) {
  const r = Number($("size").value) / 2;
  const x0 = Math.max(0, Math.floor(x - r)), x1 = Math.min(mask.width - 1, Math.ceil(x + r));
  const y0 = Math.max(0, Math.floor(y - r)), y1 = Math.min(mask.height - 1, Math.ceil(y + r));
  for (let py = y0; py <= y1; py++) {
    for (let px = x0; px <= x1; px++) {
      const dx = px + 0.5 - x, dy = py + 0.5 - y;
      if (dx * dx + dy * dy <= r * r) setPixel(py * mask.width + px);
    }
  }
}

function maskPoint(e) {
  const rect = $("overlay").getBoundingClientRect();
  return [(e.clientX - rect.left) * mask.width / rect.width, (e.clientY - rect.top) * mask.height / rect.height];
}

function strokeTo(p) {
  const [x0, y0] = stroke.last;
  const steps = Math.max(1, Math.ceil(2 * Math.hypot(p[0] - x0, p[1] - y0)));
  for (let s = 1; s <= steps; s++) stamp(x0 + (p[0] - x0) * s / steps, y0 + (p[1] - y0) * s / steps);
  stroke.last = p;
  ctx.putImageData(pixels, 0, 0);
}

function startStroke(e) {
  if (e.button !== 0) return;
  e.preventDefault();
  $("overlay").setPointerCapture(e.pointerId);
  const p = maskPoint(e);
  stroke = { indices: [], before: [], seen: new Set(), last: p };
  stamp(p[0], p[1]);
  ctx.putImageData(pixels, 0, 0);
}

function endStroke() {
  if (!stroke) return;
  if (stroke.indices.length > 0) {
    undoStack.push({ indices: stroke.indices, before: stroke.before, after: stroke.indices.map((i) => values[i]) });
    redoStack = [];
  }
  stroke = null;
  updateButtons();
  setStatus(unsaved() ? "unsaved changes" : "");
}

function apply(step, which) {
  step.indices.forEach((i, k) => { values[i] = step[which][k]; drawPixel(i); });
  ctx.putImageData(pixels, 0, 0);
}

// Moves the last step of `from` to `to`, putting its pixels back as they were `which`.
function replay(from, to, which) {
  const step = from.pop();
  if (!step) return;
  apply(step, which);
  to.push(step);
  updateButtons();
  setStatus(unsaved() ? "unsaved changes" : "");
}

function undo() { replay(undoStack, redoStack, "before"); }
function redo() { replay(redoStack, undoStack, "after"); }

function showFiles() {
  $("files").textContent = `original: ${mask.original} (never written) · corrections: ${mask.corrected}` +
    (mask.version > 0 ? ` · painting on version ${mask.version}` : " · painting on the original");
}

function setZoom() {
  const z = Number($("zoom").value);
  for (const e of [$("canvas-box"), $("base"), $("overlay")]) { e.style.width = `${mask.width * z}px`; e.style.height = `${mask.height * z}px`; }
}

async function loadHistory() {
  const r = await fetch(`/api/masks/${q(mask.stem)}/history`);
  const body = await r.json();
  const t = $("history");
  t.replaceChildren();
  if (!r.ok) { t.appendChild(el("tr", {}, [el("td", { class: "error", text: body.error })])); return; }
  t.appendChild(el("tr", {}, ["version", "time (UTC)", "editor", "pixels changed", "to", "file"].map((h) => el("th", { text: h }))));
  const names = mask.classes.map((c) => c.name).concat(["unlabelled"]);
  for (const c of body.corrections.slice().reverse()) {
    const to = c.changed_to.map((n, k) => (n ? `${names[k]} ${n}` : "")).filter(Boolean).join(", ");
    t.appendChild(el("tr", { "data-version": c.version }, [c.version, c.time, c.editor, c.pixels_changed, to || "–", c.file]
      .map((v) => el("td", { text: String(v) }))));
  }
}

async function save() {
  const editor = $("editor").value.trim();
  if (!editor) { setStatus("give your name as the editor first", true); $("editor").focus(); return; }
  localStorage.setItem("leukex-editor", editor);
  $("save").disabled = true;
  setStatus("saving…");
  try {
    const r = await fetch(`/api/masks/${q(mask.stem)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ editor, base_version: mask.version, width: mask.width, height: mask.height, runs: encodeRuns(values) }),
    });
    const body = await r.json();
    if (!r.ok) { setStatus(`not saved: ${body.error}`, true); return; }
    mask.version = body.correction.version;
    savedValues = values.slice();
    document.body.dataset.version = String(mask.version);
    showFiles();
    setStatus(`Saved version ${mask.version}: ${body.correction.pixels_changed} pixels changed, written to ${body.corrected} (and ${body.history_file})`);
    await loadHistory();
  } catch (e) {
    setStatus(`not saved: ${e}`, true);
  } finally {
    $("save").disabled = false;
  }
}

function onKey(e) {
  if (e.target instanceof HTMLInputElement && e.target.type === "text") return;
  const mod = e.ctrlKey || e.metaKey;
  if (mod && (e.key === "z" || e.key === "Z")) { e.preventDefault(); if (e.shiftKey) redo(); else undo(); return; }
  if (mod && e.key === "y") { e.preventDefault(); redo(); return; }
  if (mod) return;
  if (e.key >= "1" && e.key <= "5") select(Number(e.key) - 1);
  else if (e.key === "e" || e.key === "E") select(0);
  else if (e.key === "[" || e.key === "]") {
    const s = $("size");
    s.value = Math.max(1, Math.min(40, Number(s.value) + (e.key === "]" ? 1 : -1)));
    $("size-value").textContent = s.value;
  }
}

async function main() {
  const data = await (await fetch("/api/maps")).json();
  const stems = data.images.filter((i) => i.has_mask).map((i) => i.stem);
  const wanted = new URLSearchParams(location.search).get("stem");
  const stem = wanted ?? stems[0];
  for (const s of stems) $("stem").appendChild(el("option", { value: s, text: s }));
  if (!stem) { setStatus("this study has no masks to correct", true); document.body.dataset.ready = "1"; return; }
  $("stem").value = stem;
  $("stem").addEventListener("change", () => { location.search = `?stem=${q($("stem").value)}`; });

  const r = await fetch(`/api/masks/${q(stem)}`);
  const body = await r.json();
  if (!r.ok) { setStatus(body.error, true); document.body.dataset.ready = "1"; return; }
  mask = body;
  colours = mask.classes.map((c) => c.colour);
  values = decodeRuns(mask.runs, mask.width * mask.height);
  savedValues = values.slice();
  document.body.dataset.version = String(mask.version);

  const box = $("classes");
  for (const c of mask.classes) {
    const sw = el("span", { class: "sw" });
    sw.style.background = c.index === 0 ? "repeating-linear-gradient(45deg,#fff,#fff 2px,#ccc 2px,#ccc 4px)" : `rgb(${c.colour[0]},${c.colour[1]},${c.colour[2]})`;
    const b = el("button", { id: `class-${c.index}`, "data-class": c.index, title: `key ${c.index + 1}` }, [sw]);
    b.appendChild(document.createTextNode(`${c.index + 1} ${c.name}${c.index === 0 ? " (eraser)" : ""}`));
    b.disabled = !c.paintable;
    if (!c.paintable) b.title = "the mask's label table has no id for this class";
    b.addEventListener("click", () => select(c.index));
    box.appendChild(b);
  }
  select(mask.classes[1].paintable ? 1 : 0);

  const canvas = $("overlay");
  canvas.width = mask.width;
  canvas.height = mask.height;
  ctx = canvas.getContext("2d");
  pixels = ctx.createImageData(mask.width, mask.height);
  redraw();
  const base = $("base");
  // Without an image (a `.npy` input) the mask is painted alone.
  if (mask.has_image) base.src = `/api/image.png?stem=${q(stem)}`; else base.hidden = true;
  $("zoom").value = String(Math.max(1, Math.min(12, Math.round(512 / mask.width))));
  if (!$("zoom").value) $("zoom").value = "4";
  setZoom();
  canvas.style.opacity = $("opacity").value / 100;

  canvas.addEventListener("pointerdown", startStroke);
  canvas.addEventListener("pointermove", (e) => { if (stroke) strokeTo(maskPoint(e)); });
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  $("opacity").addEventListener("input", () => { canvas.style.opacity = $("opacity").value / 100; });
  $("size").addEventListener("input", () => { $("size-value").textContent = $("size").value; });
  $("zoom").addEventListener("change", setZoom);
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("save").addEventListener("click", save);
  document.addEventListener("keydown", onKey);
  window.addEventListener("beforeunload", (e) => { if (unsaved()) e.preventDefault(); });
  $("editor").value = localStorage.getItem("leukex-editor") ?? "";
  showFiles();
  updateButtons();
  await loadHistory();
  document.body.dataset.ready = "1";
}
main();
