// Helpers shared by the pages' scripts (loaded first by each page).
"use strict";
const $ = (id) => document.getElementById(id);
const q = encodeURIComponent;

// An element with attributes (`text` sets its text, `class` its class) and children.
function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.appendChild(c);
  return e;
}
