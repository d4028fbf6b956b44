"""The authenticated depot: real-time and restricted products for logged-in users.

``GET /depot/<home-relative path>`` serves one file of the home's product trees (``products/``,
``alerts/``, ``logs/``, ``raw/``) to an authenticated user (bearer token, Basic credentials or
the login cookie); ``GET /depot/`` and directory paths list their content as JSON (or HTML for
a browser). The home's database, the simulator's ``truth/`` and the ``refcat/`` inputs are
never served.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from zsds.archive.auth import require_user
from zsds.archive.context import ArchiveContext, Ctx
from zsds.db.schema import User

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


@router.get("/depot/{relpath:path}")
def depot(relpath: str, request: Request, ctx: Ctx,
          user: Annotated[User, Depends(require_user)]) -> Response:
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
        rows = "".join(f"<li><a href='/depot/{e['path']}'>{e['name']}</a> {e['size'] or ''}</li>"
                       for e in entries)
        return HTMLResponse(f"<!DOCTYPE html><html><body><h1>/depot/{relpath}</h1>"
                            f"<ul>{rows}</ul></body></html>")
    return JSONResponse({"path": relpath.strip("/"), "entries": entries})
