"""The authenticated depot: real-time and restricted products for logged-in users.

``GET /depot/<home-relative path>`` serves one file of the home's product trees (``products/``,
``alerts/``, ``logs/``, ``raw/``) to an authenticated user (bearer token, Basic credentials or
the login cookie); ``GET /depot/`` and directory paths list their content as JSON (or HTML for
a browser). The home's database, the simulator's ``truth/`` and the ``refcat/`` inputs are
never served. The login is enforced by the app's authorization policy
(:data:`zsds.archive.policy.ROUTES`: the depot is a LOGIN route). Everything the HTML listing
shows is escaped, and its links are percent-encoded, since the path comes from the URL.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from zsds.archive.context import ArchiveContext, Ctx

#: Top-level folders of the home the depot serves.
DEPOT_ROOTS = ("products", "alerts", "logs", "raw")

router = APIRouter(tags=["depot"])


def safe_path(ctx: ArchiveContext, relpath: str, roots: tuple[str, ...] = DEPOT_ROOTS) -> Path:
    """Absolute path of a home-relative path, refusing anything outside ``roots``.

    Raises
    ------
    HTTPException
        404 for paths outside the served folders (``..``, absolute paths, symlinks out).
    """
    rel = relpath.strip("/")
    home = ctx.home.root.resolve()
    path = (home / rel).resolve()
    try:
        inner = path.relative_to(home)
    except ValueError:
        raise HTTPException(status_code=404, detail=f"no such product: {relpath}") from None
    if not inner.parts or inner.parts[0] not in roots:
        raise HTTPException(status_code=404, detail=f"no such product: {relpath}")
    return path


def _listing(ctx: ArchiveContext, path: Path) -> list[dict]:
    home = ctx.home.root.resolve()
    out = []
    for p in sorted(path.iterdir()):
        st = p.stat()
        out.append({"name": p.name + ("/" if p.is_dir() else ""),
                    "path": str(p.relative_to(home)), "size": None if p.is_dir() else st.st_size,
                    "modified": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat()})
    return out


def _html_listing(relpath: str, entries: list[dict]) -> str:
    """The HTML listing of a depot folder: the requested path and every name escaped, the
    links percent-encoded (the path is whatever the client put in the URL)."""
    title = html.escape(f"/depot/{relpath}")
    rows = "".join(
        f'<li><a href="{html.escape("/depot/" + quote(e["path"]))}">{html.escape(e["name"])}'
        f"</a> {e['size'] if e['size'] is not None else ''}</li>" for e in entries)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1><ul>{rows}</ul></body></html>")


@router.get("/depot/{relpath:path}")
def depot(relpath: str, request: Request, ctx: Ctx) -> Response:
    """One depot file, or a listing of a depot folder (``/depot/`` lists the roots)."""
    if relpath.strip("/") == "":
        entries = [{"name": r + "/", "path": r, "size": None, "modified": None}
                   for r in DEPOT_ROOTS if (ctx.home.root / r).is_dir()]
    else:
        path = safe_path(ctx, relpath)
        if path.is_file():
            return FileResponse(path, filename=path.name)
        if not path.is_dir():
            raise HTTPException(status_code=404, detail=f"no such product: {relpath}")
        entries = _listing(ctx, path)
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_html_listing(relpath, entries))
    return JSONResponse({"path": relpath.strip("/"), "entries": entries})
