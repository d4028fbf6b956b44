// Image viewer: the server renders PNGs of the visible section (/ui/api/image.png); this
// script keeps the view (centre, zoom), handles wheel/drag/buttons, draws the catalogue and
// target overlay in SVG and reads pixel values and sky coordinates (/ui/api/pix2world).
(function () {
  "use strict";
  // The view is a JSON data block of the page (the CSP allows no inline script).
  const V = JSON.parse(document.getElementById("view-data").textContent);
  const vp = document.getElementById("viewport");
  const img = document.getElementById("image");
  const svg = document.getElementById("overlay");
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  const state = { cx: V.nx / 2, cy: V.ny / 2, zoom: 1, catalog: null, seq: 0, url: null };
  // Geometry: "edge" coordinates, pixel i spans [i, i+1); (cx, cy) is the viewport centre.

  function size() { return { W: vp.clientWidth, H: vp.clientHeight }; }
  function fitZoom() { const { W, H } = size(); return Math.min(W / V.nx, H / V.ny); }
  function clampZoom(z) { return Math.min(32, Math.max(fitZoom() / 4, z)); }
  function toScreen(ex, ey) {
    const { W, H } = size();
    return [(ex - state.cx) * state.zoom + W / 2, H / 2 - (ey - state.cy) * state.zoom];
  }
  function toImage(sx, sy) {
    const { W, H } = size();
    return [state.cx + (sx - W / 2) / state.zoom, state.cy - (sy - H / 2) / state.zoom];
  }

  function section() {
    const { W, H } = size();
    const z = state.zoom;
    const x0 = Math.max(0, Math.floor(state.cx - W / 2 / z));
    const x1 = Math.min(V.nx, Math.ceil(state.cx + W / 2 / z));
    const y0 = Math.max(0, Math.floor(state.cy - H / 2 / z));
    const y1 = Math.min(V.ny, Math.ceil(state.cy + H / 2 / z));
    return { x0, y0, w: Math.max(1, x1 - x0), h: Math.max(1, y1 - y0) };
  }

  function pngUrl(s) {
    const p = new URLSearchParams({
      path: V.path, hdu: V.hdu, stretch: $("stretch").value, cmap: $("cmap").value,
      x0: s.x0, y0: s.y0, w: s.w, h: s.h, scale: state.zoom.toFixed(5),
    });
    if ($("lo").value.trim() !== "") p.set("lo", $("lo").value.trim());
    if ($("hi").value.trim() !== "") p.set("hi", $("hi").value.trim());
    return "/ui/api/image.png?" + p.toString();
  }

  function place(s, z) {
    // Position the PNG of section s rendered at zoom z in the current view.
    const [left, top] = toScreen(s.x0, s.y0 + s.h);
    const k = state.zoom / z;
    img.style.left = left + "px";
    img.style.top = top + "px";
    img.style.width = s.w * z * k + "px";
    img.style.height = s.h * z * k + "px";
    img.style.transform = "";
  }

  function showError(msg) {
    const e = $("viewer-error");
    e.textContent = msg || "";
    e.hidden = !msg;
  }

  async function refresh() {
    const s = section();
    const z = state.zoom;
    const url = pngUrl(s);
    const seq = ++state.seq;
    $("zoom-level").textContent = (z >= 1 ? z.toFixed(z < 10 ? 2 : 1) : z.toFixed(3)) + "×";
    drawOverlay();
    if (url === state.url) { place(s, z); return; }
    $("loading").hidden = false;
    try {
      const r = await fetch(url);
      if (!r.ok) {
        let detail = r.statusText;
        try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
        throw new Error(detail);
      }
      const blob = await r.blob();
      if (seq !== state.seq) return; // a newer view was requested meanwhile
      const obj = URL.createObjectURL(blob);
      await new Promise((ok, fail) => { img.onload = ok; img.onerror = fail; img.src = obj; });
      if (state.objUrl) URL.revokeObjectURL(state.objUrl);
      state.objUrl = obj;
      state.url = url;
      img.dataset.src = url;
      img.dataset.zoom = z.toFixed(5);
      $("lo").placeholder = Number(r.headers.get("X-Display-Lo")).toPrecision(5);
      $("hi").placeholder = Number(r.headers.get("X-Display-Hi")).toPrecision(5);
      if (seq === state.seq) place(s, z);
      showError("");
    } catch (err) {
      showError("Could not render the image: " + err.message);
    } finally {
      if (seq === state.seq) $("loading").hidden = true;
    }
  }

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVGNS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function drawOverlay() {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const { W, H } = size();
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    if (V.target) {
      const [sx, sy] = toScreen(V.target.x + 0.5, V.target.y + 0.5);
      const g = el("g", { class: "target" }, svg);
      for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
        el("line", { x1: sx + dx * 8, y1: sy + dy * 8, x2: sx + dx * 24, y2: sy + dy * 24 }, g);
      }
    }
    const c = state.catalog;
    if (!c || !$("show-catalog").checked) return;
    const r = Math.max(5, 2.5 * state.zoom);
    const g = el("g", { class: "catalog" }, svg);
    let shown = 0;
    for (let i = 0; i < c.n; i++) {
      const [sx, sy] = toScreen(c.x[i] - c.origin + 0.5, c.y[i] - c.origin + 0.5);
      if (sx < -r || sy < -r || sx > W + r || sy > H + r) continue;
      const circ = el("circle", { cx: sx.toFixed(1), cy: sy.toFixed(1), r: r, class: "src",
                                  "data-i": i }, g);
      const mag = c.mag[i] === null ? "–" : c.mag[i].toFixed(3);
      el("title", {}, circ).textContent = `#${i} mag ${mag} ± ${c.sigmag[i] === null ? "–" : c.sigmag[i].toFixed(3)}`;
      shown++;
    }
    svg.dataset.shown = shown;
  }

  async function loadCatalog() {
    if (state.catalog || !V.catalog) return;
    const r = await fetch("/ui/api/catalog?path=" + enc(V.path));
    if (!r.ok) { showError("catalogue: " + r.statusText); return; }
    state.catalog = await r.json();
    $("catalog-count").textContent = `(${state.catalog.n})`;
  }

  // ------------------------------------------------------------------ interaction
  function zoomAt(factor, sx, sy) {
    const { W, H } = size();
    if (sx === undefined) { sx = W / 2; sy = H / 2; }
    const [ex, ey] = toImage(sx, sy);
    state.zoom = clampZoom(state.zoom * factor);
    state.cx = ex - (sx - W / 2) / state.zoom;
    state.cy = ey + (sy - H / 2) / state.zoom;
    refresh();
  }
  function fit() { state.zoom = fitZoom(); state.cx = V.nx / 2; state.cy = V.ny / 2; refresh(); }

  vp.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const rect = vp.getBoundingClientRect();
    zoomAt(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - rect.left, ev.clientY - rect.top);
  }, { passive: false });

  let drag = null;
  vp.addEventListener("mousedown", (ev) => {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, dx: 0, dy: 0 };
    vp.classList.add("dragging");
  });
  window.addEventListener("mousemove", (ev) => {
    if (drag) {
      drag.dx = ev.clientX - drag.x;
      drag.dy = ev.clientY - drag.y;
      const t = `translate(${drag.dx}px, ${drag.dy}px)`;
      img.style.transform = t;
      svg.style.transform = t;
    }
  });
  window.addEventListener("mouseup", () => {
    if (!drag) return;
    const d = drag;
    drag = null;
    vp.classList.remove("dragging");
    svg.style.transform = "";
    if (d.dx === 0 && d.dy === 0) return;
    state.cx -= d.dx / state.zoom;
    state.cy += d.dy / state.zoom;
    // Keep the moved PNG where it is until the new one arrives.
    img.style.left = parseFloat(img.style.left) + d.dx + "px";
    img.style.top = parseFloat(img.style.top) + d.dy + "px";
    img.style.transform = "";
    refresh();
  });

  // Pixel read-out: at most one request in flight, the latest position wins.
  let hover = { busy: false, next: null };
  async function readout(x, y) {
    if (hover.busy) { hover.next = [x, y]; return; }
    hover.busy = true;
    try {
      const q = new URLSearchParams({ path: V.path, hdu: V.hdu, x: x.toFixed(2), y: y.toFixed(2) });
      const r = await fetch("/ui/api/pix2world?" + q);
      if (r.ok) {
        const p = await r.json();
        $("ro-xy").textContent = `${(p.x + 1).toFixed(1)}, ${(p.y + 1).toFixed(1)}`;
        $("ro-ra").textContent = p.ra === null ? "–" : `${p.ra.toFixed(6)}°  ${sexa(p.ra / 15, false)}`;
        $("ro-dec").textContent = p.dec === null ? "–" : `${p.dec.toFixed(6)}°  ${sexa(p.dec, true)}`;
        $("ro-val").textContent = p.value === null ? "–" : p.value.toPrecision(6);
      }
    } finally {
      hover.busy = false;
      if (hover.next) { const n = hover.next; hover.next = null; readout(n[0], n[1]); }
    }
  }
  function sexa(v, sign) {
    const s = v < 0 ? "-" : (sign ? "+" : "");
    v = Math.abs(v);
    let d = Math.floor(v), m = Math.floor((v - d) * 60), sec = ((v - d) * 60 - m) * 60;
    if (sec >= 59.995) { sec = 0; m += 1; }
    if (m >= 60) { m = 0; d += 1; }
    const pad = (n, w) => String(n).padStart(w, "0");
    return `${s}${pad(d, 2)}:${pad(m, 2)}:${sec.toFixed(sign ? 1 : 2).padStart(sign ? 4 : 5, "0")}`;
  }
  vp.addEventListener("mousemove", (ev) => {
    if (drag) return;
    const rect = vp.getBoundingClientRect();
    const [ex, ey] = toImage(ev.clientX - rect.left, ev.clientY - rect.top);
    if (ex < 0 || ey < 0 || ex > V.nx || ey > V.ny) return;
    readout(ex - 0.5, ey - 0.5);
    const t = ev.target;
    $("ro-src").textContent = t && t.classList && t.classList.contains("src")
      ? t.querySelector("title").textContent : "";
  });

  vp.addEventListener("keydown", (ev) => {
    if (ev.key === "+" || ev.key === "=") zoomAt(1.25);
    else if (ev.key === "-") zoomAt(0.8);
    else if (ev.key === "0") fit();
  });
  $("zoom-in").addEventListener("click", () => zoomAt(1.25));
  $("zoom-out").addEventListener("click", () => zoomAt(0.8));
  $("zoom-fit").addEventListener("click", fit);
  $("zoom-1").addEventListener("click", () => { state.zoom = 1; refresh(); });
  for (const id of ["stretch", "cmap", "lo", "hi"]) $(id).addEventListener("change", refresh);
  $("show-catalog").addEventListener("change", async () => {
    if ($("show-catalog").checked) await loadCatalog();
    drawOverlay();
  });
  $("toggle-header").addEventListener("click", async () => {
    const pre = $("header-text");
    if (!pre.textContent) {
      const r = await fetch("/ui/api/header?path=" + enc(V.path));
      pre.textContent = await r.text();
    }
    pre.hidden = !pre.hidden;
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(refresh, 150);
  });

  state.zoom = fitZoom();
  if (V.target) {
    state.cx = V.target.x + 0.5;
    state.cy = V.target.y + 0.5;
    state.zoom = clampZoom(Math.max(1, 2 * fitZoom()));
  }
  refresh();
})();
