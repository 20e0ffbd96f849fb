// Browsing a study: images with masks, every model x method heat map side by side,
// filters, overlay opacity, evaluation modes with per-class numbers. No framework.
"use strict";
let data = null;
let page = 0;

function fill(select, values) {
  for (const v of values) select.appendChild(el("option", { value: v, text: v }));
}

function img(src, cls) {
  return el("img", { src, class: cls, loading: "lazy", alt: "" });
}

function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1); }

async function loadShares(tile, id, mode, maskSource) {
  const r = await fetch(`/api/shares?id=${q(id)}&mode=${q(mode)}&mask=${q(maskSource)}`);
  const body = await r.json();
  const t = el("table", { class: "shares" });
  if (!r.ok) { t.appendChild(el("tr", {}, [el("td", { text: body.error })])); tile.appendChild(t); return; }
  t.appendChild(el("tr", {}, [el("td", { text: "" }), el("td", { text: "share %" }), el("td", { text: "area %" }), el("td", { text: "lift" })]));
  for (const c of body.classes.concat([{ name: "cell", ...body.cell }])) {
    t.appendChild(el("tr", {}, [el("td", { text: c.name }), el("td", { text: pct(c.share) }), el("td", { text: pct(c.area_share) }),
      el("td", { text: c.lift === null ? "–" : c.lift.toFixed(2) })]));
  }
  if (body.mask.corrected) t.appendChild(el("tr", {}, [el("td", { colspan: "4", class: "corrected", text: `counted with corrected mask v${body.mask.version}` })]));
  tile.appendChild(t);
}

const sharesObserver = new IntersectionObserver((entries) => {
  for (const e of entries) {
    if (!e.isIntersecting) continue;
    sharesObserver.unobserve(e.target);
    loadShares(e.target, e.target.dataset.map, e.target.dataset.mode, e.target.dataset.maskSource);
  }
});

function render() {
  const cls = $("f-class").value, correct = $("f-correct").value, model = $("f-model").value;
  const method = $("f-method").value, mode = $("f-mode").value, showMask = $("f-mask").checked;
  const maskSource = $("f-mask-source").value;
  const opacity = $("f-opacity").value / 100;
  const size = Number($("f-page-size").value);
  const maps = data.maps.filter((m) => (!model || m.model === model) && (!method || m.method === method) &&
    (!cls || m.true_class === cls) && (!correct || String(m.correct) === correct));
  const byStem = new Map();
  for (const m of maps) { if (!byStem.has(m.stem)) byStem.set(m.stem, []); byStem.get(m.stem).push(m); }
  const images = data.images.filter((i) => byStem.has(i.stem));
  const pages = Math.max(1, Math.ceil(images.length / size));
  page = Math.min(page, pages - 1);
  $("page").textContent = `page ${page + 1} of ${pages} · ${images.length} images · ${maps.length} heat maps`;
  const grid = $("grid");
  grid.replaceChildren();
  for (const im of images.slice(page * size, (page + 1) * size)) {
    const tiles = el("div", { class: "tiles" });
    const base = im.has_image ? `/api/image.png?stem=${q(im.stem)}` : null;
    const mask = im.has_mask && showMask ? `/api/mask.png?stem=${q(im.stem)}&mask=${q(maskSource)}` : null;
    const corrected = im.mask_corrected && maskSource === "latest";
    const first = el("div", { class: "stack" });
    if (base) first.appendChild(img(base, "base"));
    if (mask) { const m = img(mask, "mask"); m.style.opacity = 0.55; first.appendChild(m); }
    const cap = el("div", { class: "cap", text: !mask ? "image" : (corrected ? "image + corrected mask " : "image + mask") });
    if (mask && corrected) cap.appendChild(el("a", { href: `/api/mask.png?stem=${q(im.stem)}&mask=original`, target: "_blank", text: "(original)" }));
    tiles.appendChild(el("div", { class: "tile", "data-mask": mask ? (corrected ? "corrected" : "original") : "none" }, [first, cap]));
    for (const m of byStem.get(im.stem)) {
      const stack = el("div", { class: "stack" });
      if (base) stack.appendChild(img(base, "base"));
      const heat = img(`/api/map.png?id=${q(m.id)}`, "heat");
      heat.style.opacity = base ? opacity : 1;
      stack.appendChild(heat);
      if (mode) stack.appendChild(img(`/api/selection.png?id=${q(m.id)}&mode=${q(mode)}`, "sel"));
      const verdict = m.correct === null ? "" : (m.correct ? " ✓" : " ✗");
      const cap = el("div", { class: "cap" }, [el("span", { text: `${m.model} · ${m.method} · predicted ${m.predicted ?? "?"}` }),
        el("span", { class: m.correct ? "ok" : "wrong", text: verdict })]);
      const tile = el("div", { class: "tile", "data-map": m.id }, [stack, cap]);
      if (mode && im.has_mask) { tile.dataset.mode = mode; tile.dataset.maskSource = maskSource; sharesObserver.observe(tile); }
      tiles.appendChild(tile);
    }
    const h2 = el("h2", { text: `${im.stem} · true class ${im.true_class ?? "unknown"}` });
    if (im.has_mask) { h2.appendChild(document.createTextNode(" · ")); h2.appendChild(el("a", { href: `/correct?stem=${q(im.stem)}`, text: "correct mask" })); }
    grid.appendChild(el("div", { class: "row", "data-stem": im.stem }, [h2, tiles]));
  }
}

function setOpacity() {
  for (const h of document.querySelectorAll("img.heat")) h.style.opacity = $("f-opacity").value / 100;
}

async function main() {
  data = await (await fetch("/api/maps")).json();
  $("root").textContent = data.root;
  for (const n of data.notes) $("notes").appendChild(el("p", { text: n }));
  fill($("f-class"), data.classes);
  fill($("f-model"), data.models.map((m) => m.id));
  fill($("f-method"), data.methods.map((m) => m.id));
  fill($("f-mode"), data.modes);
  const legend = $("legend");
  legend.appendChild(document.createTextNode("mask:"));
  for (const c of data.morphology_classes.slice(1)) {
    const sw = el("span"); sw.style.background = `rgb(${c.colour[0]},${c.colour[1]},${c.colour[2]})`;
    legend.appendChild(sw); legend.appendChild(document.createTextNode(c.name));
  }
  legend.appendChild(document.createTextNode(" · evaluation mode: selected pixels in yellow"));
  for (const id of ["f-class", "f-correct", "f-model", "f-method", "f-mode", "f-mask", "f-mask-source", "f-page-size"]) {
    $(id).addEventListener("change", () => { page = 0; render(); });
  }
  $("f-opacity").addEventListener("input", setOpacity);
  $("prev").addEventListener("click", () => { page = Math.max(0, page - 1); render(); });
  $("next").addEventListener("click", () => { page += 1; render(); });
  render();
  document.body.dataset.ready = "1";
}
main();
