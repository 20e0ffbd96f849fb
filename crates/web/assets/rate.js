// Blinded rating: one map at a time, only opaque ids, every map in the same colours.
"use strict";
const KEY = "leukex-rater";
let rater = localStorage.getItem(KEY);
let current = null;

function show(section) {
  for (const s of ["start", "rating", "finished"]) $(s).hidden = s !== section;
}

async function api(method, url, body) {
  const r = await fetch(url, { method, headers: body ? { "Content-Type": "application/json" } : {}, body: body ? JSON.stringify(body) : undefined });
  const json = await r.json().catch(() => ({}));
  return { ok: r.ok, status: r.status, json };
}

async function loadScale() {
  const scale = (await api("GET", "/api/scale")).json;
  const box = $("scale");
  box.replaceChildren();
  for (const l of scale.levels) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio"; input.name = "score"; input.value = l.score; input.id = `score-${l.score}`;
    input.addEventListener("change", ready);
    const title = document.createElement("strong");
    title.textContent = ` ${l.score} — ${l.label}`;
    const def = document.createElement("div");
    def.className = "muted"; def.textContent = l.definition;
    label.append(input, title, def);
    box.appendChild(label);
  }
}

function chosen(name) {
  const c = document.querySelector(`input[name=${name}]:checked`);
  return c ? c.value : null;
}

function ready() { $("submit").disabled = chosen("score") === null || chosen("morph") === null; }

async function next() {
  const r = await api("GET", `/api/round/${encodeURIComponent(rater)}/next`);
  if (r.status === 404) { localStorage.removeItem(KEY); rater = null; show("start"); return; }
  if (!r.ok) { $("msg").textContent = r.json.error || "error"; return; }
  if (r.json.finished) { await reveal(); show("finished"); return; }
  current = r.json.item;
  $("rater-name").textContent = rater;
  $("progress").textContent = `${r.json.done} of ${r.json.total} rated`;
  $("calibration").hidden = !current.calibration;
  const base = `/api/blind/${encodeURIComponent(current.map)}`;
  $("blind-image").src = `${base}/image.png`;
  $("blind-under").src = `${base}/image.png`;
  $("blind-map").src = `${base}/map.png`;
  $("blind-map").dataset.map = current.map;
  for (const i of document.querySelectorAll("input[type=radio]")) i.checked = false;
  $("msg").textContent = "";
  ready();
  show("rating");
}

// Only asked once the round is finished: the server refuses (403) before.
async function reveal() {
  const r = await api("GET", `/api/round/${encodeURIComponent(rater)}/reveal`);
  const t = $("reveal");
  t.replaceChildren();
  if (!r.ok) { $("reveal-summary").textContent = r.json.error || `error ${r.status}`; return; }
  const items = r.json.items;
  const counted = items.filter((i) => i.kind === "main");
  const mean = counted.length ? counted.reduce((s, i) => s + i.score, 0) / counted.length : null;
  $("reveal-summary").textContent = `${r.json.rater} (${r.json.expertise}) · ${items.length} ratings` +
    (mean === null ? "" : ` · mean score of the counted maps ${mean.toFixed(2)}`);
  t.appendChild(el("tr", {}, ["#", "heat map", "model", "method", "image", "true class", "prediction", "score", "morphology", "shown as"]
    .map((h) => el("th", { text: h }))));
  for (const i of items) {
    const thumb = el("img", { src: `/api/map.png?id=${q(i.map)}`, alt: "", width: "48", height: "48", loading: "lazy" });
    const verdict = i.correct === null ? "" : (i.correct ? " ✓" : " ✗");
    t.appendChild(el("tr", { "data-map": i.map }, [
      el("td", { text: String(i.position + 1) }), el("td", {}, [thumb]), el("td", { text: i.model ?? "?" }),
      el("td", { text: i.method ?? "?" }), el("td", { text: i.stem ?? "?" }), el("td", { text: i.true_class ?? "?" }),
      el("td", { text: `${i.predicted ?? "?"}${verdict}` }), el("td", { class: "score", text: String(i.score) }),
      el("td", { text: i.morphology ? "yes" : "no" }), el("td", { text: i.kind }),
    ]));
  }
}

async function submit() {
  $("submit").disabled = true;
  const r = await api("POST", "/api/ratings", {
    rater, map: current.map, score: Number(chosen("score")), morphology: chosen("morph") === "yes",
  });
  if (r.ok || r.status === 409) { await next(); } else { $("msg").textContent = r.json.error || `error ${r.status}`; ready(); }
}

async function start() {
  const name = $("name").value.trim(), expertise = $("expertise").value.trim();
  const r = await api("POST", "/api/raters", { name, expertise });
  if (!r.ok) { $("start-msg").textContent = r.json.error || `error ${r.status}`; return; }
  rater = r.json.name;
  localStorage.setItem(KEY, rater);
  await next();
}

async function main() {
  await loadScale();
  $("opacity").addEventListener("input", () => { $("blind-map").style.opacity = $("opacity").value / 100; });
  $("blind-map").style.opacity = 0.7;
  for (const i of document.querySelectorAll("input[name=morph]")) i.addEventListener("change", ready);
  $("submit").addEventListener("click", submit);
  $("start-btn").addEventListener("click", start);
  $("switch").addEventListener("click", (e) => { e.preventDefault(); localStorage.removeItem(KEY); rater = null; show("start"); });
  if (rater) await next(); else show("start");
  document.body.dataset.ready = "1";
}
main();
