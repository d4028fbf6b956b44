// Shared UI helpers: click a column header of a "sortable" table to sort it (again to reverse).
(function () {
  "use strict";
  function key(cell, numeric) {
    const v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
    if (!numeric) return v.toLowerCase();
    const n = parseFloat(v);
    return Number.isNaN(n) ? Infinity : n;
  }
  for (const table of document.querySelectorAll("table.sortable")) {
    const heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.from(heads).forEach((th, col) => {
      if (th.classList.contains("nosort")) return;
      th.classList.add("sort");
      th.title = "sort";
      th.addEventListener("click", () => {
        const numeric = th.dataset.type === "num";
        const dir = th.dataset.dir === "asc" ? -1 : 1;
        for (const h of heads) { delete h.dataset.dir; h.classList.remove("asc", "desc"); }
        th.dataset.dir = dir === 1 ? "asc" : "desc";
        th.classList.add(dir === 1 ? "asc" : "desc");
        const body = table.tBodies[0];
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const ka = key(a.cells[col], numeric), kb = key(b.cells[col], numeric);
          return (ka < kb ? -1 : ka > kb ? 1 : 0) * dir;
        });
        for (const r of rows) body.appendChild(r);
      });
    });
  }
})();
