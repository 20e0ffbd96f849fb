// Table 2 from the stored ratings.
"use strict";
function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); }
function fmt(v, d) { return v === null || v === undefined ? "–" : v.toFixed(d); }
function table(title, rows, withModel) {
  const box = document.createElement("div");
  const h = document.createElement("h2"); h.textContent = title; box.appendChild(h);
  const t = document.createElement("table"); t.className = "t2";
  const head = t.insertRow();
  for (const c of ["model", "method", "mean score [95 % CI]", "morphological information", "maps at the top level", "raters", "maps", "Krippendorff α"]) {
    const th = document.createElement("th"); th.textContent = c; head.appendChild(th);
  }
  for (const r of rows) {
    const tr = t.insertRow();
    cell(tr, withModel ? r.model : "all"); cell(tr, r.method);
    cell(tr, `${fmt(r.mean_score, 2)} [${fmt(r.ci_low, 2)}, ${fmt(r.ci_high, 2)}]`);
    cell(tr, `${fmt(r.morphology_percent, 1)} %`); cell(tr, r.top_level_maps); cell(tr, r.raters); cell(tr, r.maps); cell(tr, fmt(r.alpha, 3));
  }
  box.appendChild(t);
  return box;
}
async function main() {
  const s = await (await fetch("/api/summary")).json();
  const root = document.getElementById("summary");
  root.replaceChildren();
  const p = document.createElement("p");
  p.textContent = `${s.ratings} counted ratings of ${s.maps} maps by ${s.raters} raters · Krippendorff's α (ordinal) ${fmt(s.alpha, 3)} · calibration maps and repeats not counted`;
  root.appendChild(p);
  root.appendChild(table("Per method", s.by_method, false));
  root.appendChild(table("Per model × method", s.by_model_method, true));
  const h = document.createElement("h2"); h.textContent = "Repeat consistency"; root.appendChild(h);
  const t = document.createElement("table"); t.className = "t2";
  const head = t.insertRow();
  for (const c of ["rater", "expertise", "ratings", "repeats", "same score", "mean |Δ score|", "same morphology answer"]) {
    const th = document.createElement("th"); th.textContent = c; head.appendChild(th);
  }
  for (const c of s.consistency) {
    const tr = t.insertRow();
    cell(tr, c.rater); cell(tr, c.expertise); cell(tr, c.ratings); cell(tr, c.repeats);
    cell(tr, c.same_score === null ? "–" : `${(100 * c.same_score).toFixed(0)} %`);
    cell(tr, fmt(c.mean_abs_difference, 2));
    cell(tr, c.same_morphology === null ? "–" : `${(100 * c.same_morphology).toFixed(0)} %`);
  }
  root.appendChild(t);
  document.body.dataset.ready = "1";
}
main();
