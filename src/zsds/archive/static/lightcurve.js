// Light-curve viewer: per-band detections with error bars and upper limits in SVG, the
// server's Lomb-Scargle periodogram, and client-side phase folding at a chosen period.
(function () {
  "use strict";
  const SVGNS = "http://www.w3.org/2000/svg";
  const COLOURS = { 1: "#3cb44b", 2: "#e6194b", 3: "#d4a017" };
  const $ = (id) => document.getElementById(id);
  const lc = $("lc-plot");
  const pg = $("periodogram");
  const state = { curves: [], pgram: null, mode: "time", period: null, t0: 0 };

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVGNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }
  function ticks(lo, hi, n) {
    const span = hi - lo || 1;
    const raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }
  function axes(svg, X, Y, xlab, ylab, box) {
    const g = el("g", { class: "axes" }, svg);
    el("rect", { x: box.l, y: box.t, width: box.r - box.l, height: box.b - box.t, class: "frame" }, g);
    for (const v of ticks(X.lo, X.hi, 7)) {
      const x = X.f(v);
      el("line", { x1: x, x2: x, y1: box.b, y2: box.b + 5 }, g);
      el("text", { x: x, y: box.b + 18, "text-anchor": "middle" }, g).textContent = X.fmt(v);
    }
    for (const v of ticks(Math.min(Y.lo, Y.hi), Math.max(Y.lo, Y.hi), 5)) {
      const y = Y.f(v);
      el("line", { x1: box.l - 5, x2: box.l, y1: y, y2: y }, g);
      el("text", { x: box.l - 8, y: y + 4, "text-anchor": "end" }, g).textContent = Y.fmt(v);
    }
    el("text", { x: (box.l + box.r) / 2, y: box.b + 36, "text-anchor": "middle", class: "label" }, g).textContent = xlab;
    el("text", { x: 14, y: (box.t + box.b) / 2, "text-anchor": "middle", class: "label",
                 transform: `rotate(-90 14 ${(box.t + box.b) / 2})` }, g).textContent = ylab;
  }
  function scale(lo, hi, a, b, digits) {
    const f = (v) => a + (v - lo) / (hi - lo || 1) * (b - a);
    return { lo, hi, f, inv: (p) => lo + (p - a) / (b - a) * (hi - lo), fmt: (v) => v.toFixed(digits) };
  }
  function box(svg) {
    // Never narrower than the margins: before layout (or in a hidden panel) the width can be ~0.
    const W = Math.max(320, svg.clientWidth || svg.parentNode.clientWidth || 800);
    const H = svg.clientHeight || +svg.getAttribute("height");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    return { l: 62, r: W - 16, t: 14, b: H - 44, W, H };
  }

  // ------------------------------------------------------------------ light curve
  function drawLC() {
    clear(lc);
    const B = box(lc);
    const showLim = $("show-limits").checked, showFlag = $("show-flagged").checked;
    const phase = state.mode === "phase" && state.period > 0;
    const xs = [], ys = [];
    for (const c of state.curves) {
      c.mjd.forEach((t, i) => {
        if (c.mag[i] === null || (!c.good[i] && !showFlag)) return;
        xs.push(t); ys.push(c.mag[i] - (c.magerr[i] || 0), c.mag[i] + (c.magerr[i] || 0));
      });
      if (showLim) c.limits.mjd.forEach((t, i) => {
        if (c.limits.limitmag[i] !== null) { xs.push(t); ys.push(c.limits.limitmag[i]); }
      });
    }
    if (!xs.length) { el("text", { x: B.W / 2, y: B.H / 2, "text-anchor": "middle" }, lc).textContent = "no points"; return; }
    const tmin = Math.min(...xs), tmax = Math.max(...xs), pad = (tmax - tmin) * 0.03 || 0.5;
    const ymin = Math.min(...ys), ymax = Math.max(...ys), ypad = (ymax - ymin) * 0.08 || 0.2;
    const X = phase ? scale(0, 2, B.l, B.r, 1) : scale(tmin - pad, tmax + pad, B.l, B.r, (tmax - tmin) < 2 ? 2 : 0);
    const Y = scale(ymax + ypad, ymin - ypad, B.b, B.t, 2); // magnitudes: bright up
    axes(lc, X, Y, phase ? `phase (P = ${state.period.toPrecision(7)} d)` : "MJD", "mag", B);
    const xOf = (t) => phase ? [((t - state.t0) / state.period % 1 + 1) % 1].flatMap((p) => [p, p + 1]) : [t];
    let legendY = B.t + 14;
    for (const c of state.curves) {
      const col = COLOURS[c.fid] || "#ccc";
      const g = el("g", { class: "curve", "data-oid": c.oid, "data-band": c.filtercode }, lc);
      c.mjd.forEach((t, i) => {
        const m = c.mag[i];
        if (m === null || (!c.good[i] && !showFlag)) return;
        for (const xv of xOf(t)) {
          const x = X.f(xv), e = c.magerr[i] || 0;
          el("line", { x1: x, x2: x, y1: Y.f(m - e), y2: Y.f(m + e), class: "err", stroke: col }, g);
          const p = el("circle", { cx: x.toFixed(2), cy: Y.f(m).toFixed(2), r: 3.5,
                                   class: c.good[i] ? "pt" : "pt flagged", fill: c.good[i] ? col : "none",
                                   stroke: col, "data-i": i }, g);
          el("title", {}, p).textContent = `MJD ${t.toFixed(5)}  ${c.filtercode} ${m.toFixed(3)} ± ${e.toFixed(3)}  catflags ${c.catflags[i]}`;
        }
      });
      if (showLim) c.limits.mjd.forEach((t, i) => {
        const m = c.limits.limitmag[i];
        if (m === null) return;
        for (const xv of xOf(t)) {
          const x = X.f(xv), y = Y.f(m);
          const u = el("path", { d: `M${x - 4},${y} L${x + 4},${y} L${x},${y + 7} Z`, class: "ul",
                                 fill: "none", stroke: col }, g);
          el("title", {}, u).textContent = `MJD ${t.toFixed(5)}  ${c.filtercode} > ${m.toFixed(2)} (not detected)`;
        }
      });
      el("circle", { cx: B.r - 150, cy: legendY - 4, r: 4, fill: col }, lc);
      el("text", { x: B.r - 140, y: legendY, class: "legend" }, lc).textContent =
        `${c.filtercode} ${c.oid} (${c.n})`;
      legendY += 16;
    }
    lc.dataset.mode = phase ? "phase" : "time";
    lc.dataset.points = lc.querySelectorAll("circle.pt").length;
    $("mode-time").classList.toggle("on", !phase);
    $("mode-phase").classList.toggle("on", phase);
  }

  // ------------------------------------------------------------------ periodogram
  function drawPgram() {
    clear(pg);
    const P = state.pgram;
    const B = box(pg);
    if (!P || !P.frequency.length) {
      el("text", { x: B.W / 2, y: B.H / 2, "text-anchor": "middle" }, pg).textContent =
        (P && P.message) || "no periodogram";
      return;
    }
    const f = P.frequency, pw = P.power;
    const X = scale(f[0], f[f.length - 1], B.l, B.r, 1);
    const Y = scale(0, Math.max(...pw) * 1.05, B.b, B.t, 2);
    state.pX = X;
    axes(pg, X, Y, "frequency (cycles / day)", "power", B);
    let d = "";
    for (let i = 0; i < f.length; i++) d += (i ? "L" : "M") + X.f(f[i]).toFixed(1) + "," + Y.f(pw[i]).toFixed(1);
    el("path", { d, class: "pgram" }, pg);
    if (state.period > 0) {
      const x = X.f(1 / state.period);
      if (x >= B.l && x <= B.r) el("line", { x1: x, x2: x, y1: B.t, y2: B.b, class: "pmark" }, pg);
    }
    // A transparent hit area over the plot: clicks anywhere in the frame select a frequency.
    el("rect", { x: B.l, y: B.t, width: B.r - B.l, height: B.b - B.t, class: "hit", fill: "transparent" }, pg);
  }

  pg.addEventListener("click", (ev) => {
    const P = state.pgram;
    if (!P || !P.frequency.length || !state.pX) return;
    const rect = pg.getBoundingClientRect();
    const vb = pg.viewBox.baseVal;
    const px = (ev.clientX - rect.left) * (vb && vb.width ? vb.width / rect.width : 1);
    const f0 = state.pX.inv(px);
    // Snap to the highest power within a few pixels of the click: peaks are narrow.
    const tol = Math.abs(state.pX.inv(px + 4) - f0);
    let best = -1;
    P.frequency.forEach((f, i) => {
      if (Math.abs(f - f0) <= tol && (best < 0 || P.power[i] > P.power[best])) best = i;
    });
    const f = best >= 0 ? P.frequency[best] : f0;
    if (f > 0) fold(1 / f);
  });

  function fold(period) {
    if (!(period > 0)) return;
    state.period = period;
    state.mode = "phase";
    $("period").value = period.toPrecision(8);
    drawLC();
    drawPgram();
  }

  $("fold").addEventListener("click", () => fold(parseFloat($("period").value)));
  $("period").addEventListener("change", () => fold(parseFloat($("period").value)));
  $("best-period").addEventListener("click", () => state.pgram && fold(state.pgram.best_period));
  if ($("catalog-period")) $("catalog-period").addEventListener("click", (e) => fold(parseFloat(e.target.dataset.period)));
  $("mode-time").addEventListener("click", () => { state.mode = "time"; drawLC(); });
  $("mode-phase").addEventListener("click", () => {
    if (!(state.period > 0) && state.pgram) return fold(state.pgram.best_period);
    state.mode = "phase"; drawLC();
  });
  $("show-limits").addEventListener("change", drawLC);
  $("show-flagged").addEventListener("change", drawLC);
  window.addEventListener("resize", () => { drawLC(); drawPgram(); });

  async function getJSON(url) {
    const r = await fetch(url);
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    return r.json();
  }
  async function main() {
    // The object is a JSON data block of the page (the CSP allows no inline script).
    const LC = JSON.parse(document.getElementById("lc-data").textContent);
    const oid = encodeURIComponent(LC.oid);
    try {
      const data = await getJSON("/ui/api/lightcurve?oid=" + oid);
      state.curves = data.curves;
      const good = state.curves[0].mjd.filter((t, i) => state.curves[0].good[i]);
      state.t0 = good.length ? Math.min(...good) : Math.min(...state.curves[0].mjd);
      drawLC();
      state.pgram = await getJSON("/ui/api/periodogram?oid=" + oid);
      const P = state.pgram;
      $("pgram-info").textContent = P.best_period
        ? `best period ${P.best_period.toPrecision(7)} d (power ${P.best_power.toFixed(3)}, FAP ${P.fap.toExponential(1)}, ${P.n} good points)`
        : (P.message || "");
      drawPgram();
      pg.dataset.ready = "1";
    } catch (err) {
      $("lc-error").textContent = "Could not load the light curve: " + err.message;
      $("lc-error").hidden = false;
    }
  }
  main();
})();
