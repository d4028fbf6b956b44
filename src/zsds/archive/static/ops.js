// Operations pages of the zsds archive (coverage/QA, moving objects, alerts): plain JS, no CDN.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const FILTER_COLOURS = { zg: "#2ca02c", zr: "#d62728", zi: "#ff7f0e" };
const QA_LABELS = {
  seeing: "seeing (arcsec)", maglimit: "limiting magnitude", magzp: "zero point (mag)",
  airmass: "airmass",
};

function el(name, attrs, text) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Round tick positions covering [lo, hi] (about n of them).
function ticks(lo, hi, n) {
  const span = hi - lo || Math.abs(lo) || 1;
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * span; t += step) out.push(+t.toPrecision(10));
  return out;
}

// A small chart: kind "series" (points x, y coloured) or "hist" (bars of counts).
function chart(opts) {
  const W = 360, H = 220, ml = 52, mr = 10, mt = 20, mb = 34;
  const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "plot",
                          "font-size": 10, "font-family": "sans-serif" });
  svg.appendChild(el("text", { x: W / 2, y: 13, "text-anchor": "middle", fill: "#cfd6e4" }, opts.title));
  svg.appendChild(el("rect", { x: ml, y: mt, width: W - ml - mr, height: H - mt - mb,
                               fill: "none", stroke: "#56627d" }));
  const xs = opts.x, ys = opts.y;
  if (!xs.length) {
    svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#9aa3b5" }, "no data"));
    return svg;
  }
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(0, ...ys), Math.max(...ys)];
  if (opts.kind === "series") [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const pad = (a, b) => (b > a ? 0.06 * (b - a) : Math.max(Math.abs(a) * 1e-3, 1e-3));
  const px = pad(x0, x1), py = pad(y0, y1);
  x0 -= px; x1 += px; y1 += py; if (opts.kind === "series") y0 -= py;
  const sx = (v) => ml + (W - ml - mr) * (v - x0) / (x1 - x0);
  const sy = (v) => mt + (H - mt - mb) * (1 - (v - y0) / (y1 - y0));
  for (const t of ticks(x0, x1, 4)) {
    svg.appendChild(el("text", { x: sx(t), y: H - mb + 13, "text-anchor": "middle", fill: "#9aa3b5" },
                       String(+t.toPrecision(6))));
  }
  for (const t of ticks(y0, y1, 4)) {
    svg.appendChild(el("text", { x: ml - 4, y: sy(t) + 3, "text-anchor": "end", fill: "#9aa3b5" },
                       String(+t.toPrecision(5))));
  }
  svg.appendChild(el("text", { x: ml + (W - ml - mr) / 2, y: H - 4, "text-anchor": "middle",
                               fill: "#cfd6e4" }, opts.xlabel));
  if (opts.kind === "hist") {
    const w = opts.width;
    xs.forEach((x, i) => svg.appendChild(el("rect", {
      x: sx(x), y: sy(ys[i]), width: Math.max(1, sx(x + w) - sx(x) - 1),
      height: sy(0) - sy(ys[i]), fill: "#5fb3ff", opacity: 0.8 })));
  } else {
    xs.forEach((x, i) => {
      const dot = el("circle", { cx: sx(x), cy: sy(ys[i]), r: 3, fill: opts.colours[i] || "#5fb3ff" });
      dot.appendChild(el("title", {}, opts.tips[i]));
      svg.appendChild(dot);
    });
  }
  return svg;
}

function histogram(values, nbins) {
  const lo = Math.min(...values), hi = Math.max(...values);
  const width = hi > lo ? (hi - lo) / nbins : 1;
  const counts = new Array(hi > lo ? nbins : 1).fill(0);
  for (const v of values) counts[Math.min(counts.length - 1, Math.floor((v - lo) / width))] += 1;
  return { x: counts.map((_, i) => lo + i * width), y: counts, width };
}

async function drawQA(box) {
  const night = box.dataset.night;
  const resp = await fetch(`/ui/api/qa?night=${encodeURIComponent(night)}`);
  if (!resp.ok) { box.textContent = `QA unavailable (${resp.status})`; return; }
  const qa = await resp.json();
  box.textContent = "";
  const t0 = Math.floor(Math.min(...qa.images.map((r) => r.obsjd)) - 0.5) + 0.5;
  for (const [col, label] of Object.entries(QA_LABELS)) {
    const rows = qa.images.filter((r) => r[col] !== null);
    const vals = rows.map((r) => r[col]);
    const row = document.createElement("div");
    row.className = "qa-row";
    row.style.cssText = "display:flex;flex-wrap:wrap;align-items:center;gap:1em";
    row.appendChild(chart({
      kind: "series", title: `${label} vs time`, xlabel: `hours since JD ${t0}`,
      x: rows.map((r) => (r.obsjd - t0) * 24), y: vals,
      colours: rows.map((r) => FILTER_COLOURS[r.filtercode]),
      tips: rows.map((r) => `${r.relpath}: ${r[col]}`),
    }));
    const h = vals.length ? histogram(vals, 12) : { x: [], y: [], width: 1 };
    row.appendChild(chart({ kind: "hist", title: `${label}: histogram`, xlabel: label, ...h }));
    const s = qa.stats[col];
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = s.n ? `n=${s.n}  median=${s.median.toFixed(3)}  min=${s.min.toFixed(3)}  ` +
      `max=${s.max.toFixed(3)}` : "no values";
    row.appendChild(p);
    box.appendChild(row);
  }
}

function projectionLinks() {
  const img = document.getElementById("coverage-map");
  if (!img) return;
  for (const a of document.querySelectorAll("a.proj")) {
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      const url = new URL(img.src, location.href);
      url.searchParams.set("projection", a.dataset.projection);
      img.src = url.toString();
    });
  }
}

// Click a header of a table.sortable to sort by that column (numbers numerically).
function sortableTables() {
  for (const table of document.querySelectorAll("table.sortable")) {
    table.querySelectorAll("thead th").forEach((th, col) => {
      th.style.cursor = "pointer";
      th.addEventListener("click", () => {
        const body = table.tBodies[0];
        const rows = Array.from(body.rows).filter((r) => r.cells.length > col);
        const dir = th.dataset.dir === "asc" ? -1 : 1;
        th.dataset.dir = dir === 1 ? "asc" : "desc";
        const key = (r) => r.cells[col].textContent.trim();
        rows.sort((a, b) => {
          const x = parseFloat(key(a)), y = parseFloat(key(b));
          if (!Number.isNaN(x) && !Number.isNaN(y)) return dir * (x - y);
          return dir * key(a).localeCompare(key(b));
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  }
}

// Selects that submit their form when changed (no inline handlers: the CSP forbids them).
function autoSubmit() {
  document.querySelectorAll("select[data-autosubmit]").forEach((sel) => {
    sel.addEventListener("change", () => sel.form.submit());
  });
}

document.addEventListener("DOMContentLoaded", () => {
  autoSubmit();
  const qa = document.getElementById("qa-charts");
  if (qa) drawQA(qa).catch((err) => { qa.textContent = `QA failed: ${err}`; });
  projectionLinks();
  sortableTables();
});
