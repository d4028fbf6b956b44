"""Ingest of raw CCD files from ``HOME/incoming`` into the archive and the database.

A valid file is moved (``os.replace``) to ``HOME/raw/YYYY/MMDD/ffffff/<name>`` and its
``exposures`` and ``raw_files`` rows are written in one transaction; an invalid one is moved to
``HOME/quarantine/`` next to a ``<name>.reason.json`` sidecar and recorded in ``quarantine``.
No file is ever deleted unless an identical copy (same sha256) is already archived.

A file still being written under its final name is left where it is (``waiting``), never
quarantined: :func:`still_changing` finds files whose size or time stamp moves, and a file that
reads as truncated but was modified within :data:`SETTLE_S` seconds is taken to be incomplete.
Anything in ``incoming/`` that is not a raw file (a directory, a badly named file) is
quarantined with its reason, so a night never stops on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from zsds.core.home import Home
from zsds.core.naming import RawName, parse_raw_name
from zsds.db.engine import session
from zsds.db.schema import Exposure, Quarantine, RawFile
from zsds.ingest.validate import RawFileError, RawInfo, validate_raw

#: A file that reads as truncated but was modified less than this many seconds ago is taken
#: to be still arriving, and left in ``incoming/``; older, it is quarantined as truncated.
SETTLE_S = 30.0


def still_changing(paths: Iterable[Path], interval: float = 0.2) -> set[Path]:
    """The ``paths`` whose size or modification time changes within ``interval`` seconds
    (one pause for the whole batch), or that vanish meanwhile."""
    def stat(p: Path) -> tuple[int, int] | None:
        try:
            st = p.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    paths = list(paths)
    if not paths:
        return set()
    before = {p: stat(p) for p in paths}
    time.sleep(interval)
    return {p for p in paths if before[p] is None or stat(p) != before[p]}


@dataclass(frozen=True)
class IngestResult:
    """Outcome of ingesting one file.

    Attributes
    ----------
    file : str
        File name.
    status : str
        ``ingested``, ``duplicate``, ``quarantined`` or ``waiting`` (still being written:
        left in ``incoming/`` for the next pass).
    reason : str or None
        Machine code when quarantined (see :class:`zsds.ingest.validate.RawFileError`,
        plus ``conflict``).
    message : str
        One line naming the file and what happened.
    path : Path
        Where the file is now.
    sha256 : str or None
    """

    file: str
    status: str
    reason: str | None
    message: str
    path: Path
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        """True unless the file was quarantined."""
        return self.status != "quarantined"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _free_path(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``... if taken (never overwrite in quarantine)."""
    cand, n = path, 0
    while cand.exists() or cand.with_name(cand.name + ".reason.json").exists():
        n += 1
        cand = path.with_name(f"{path.name}.{n}")
    return cand


def quarantine_file(
    home: Home, engine: Engine, path: Path, reason: str, message: str, sha256: str | None
) -> IngestResult:
    """Move ``path`` to ``HOME/quarantine`` with a JSON reason sidecar and a database row."""
    home.quarantine.mkdir(parents=True, exist_ok=True)
    dest = _free_path(home.quarantine / path.name)
    now = dt.datetime.now(dt.UTC)
    line = f"{path.name}: {message}"
    sidecar = {
        "file": path.name,
        "reason": reason,
        "message": line,
        "sha256": sha256,
        "time": now.isoformat(timespec="seconds"),
    }
    os.replace(path, dest)
    dest.with_name(dest.name + ".reason.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    with session(engine) as s:
        s.add(
            Quarantine(
                filename=path.name,
                relpath=dest.relative_to(home.root).as_posix(),
                reason=reason,
                message=line,
                sha256=sha256,
                at=now,
            )
        )
    return IngestResult(path.name, "quarantined", reason, line, dest, sha256)


def ingest_file(home: Home, engine: Engine, path: str | os.PathLike) -> IngestResult:
    """Validate one raw file and archive it, or quarantine it.

    Parameters
    ----------
    home : Home
        The zsds home (``raw/`` and ``quarantine/`` must share the file system of ``path``).
    engine : Engine
        Database with the zsds schema (:func:`zsds.db.init_db`).
    path : path-like
        The file, normally in ``HOME/incoming``.

    Returns
    -------
    IngestResult
        ``ingested``; ``duplicate`` when the identical file is already archived (the
        incoming copy is removed, the database is unchanged); or ``quarantined``.
    """
    path = Path(path)
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        return quarantine_file(home, engine, path, "not_a_file",
                               f"{what}, not a raw file", None)
    digest = sha256_of(path)
    try:
        info = validate_raw(path)
    except RawFileError as exc:
        if exc.reason == "truncated" and (still_changing([path])
                                          or time.time() - path.stat().st_mtime < SETTLE_S):
            return IngestResult(path.name, "waiting", None,
                                f"{path.name}: still being written ({exc.message}); "
                                "left in incoming", path, None)
        return quarantine_file(home, engine, path, exc.reason, exc.message, digest)
    relpath = info.name.relpath.as_posix()
    dest = home.path(relpath)

    with session(engine) as s:
        existing = s.scalars(select(RawFile).where(RawFile.relpath == relpath)).first()
        if existing is not None:
            if existing.sha256 == digest and dest.exists() and sha256_of(dest) == digest:
                path.unlink()  # an identical copy is archived
                return IngestResult(
                    path.name, "duplicate", None,
                    f"{path.name}: already archived as {relpath} (identical)", dest, digest,
                )  # fmt: skip
            msg = f"differs from the archived {relpath} (sha256 {existing.sha256[:12]}...)"
            return quarantine_file(home, engine, path, "conflict", msg, digest)
    if dest.exists() and sha256_of(dest) != digest:
        msg = f"{relpath} exists in the archive with different content"
        return quarantine_file(home, engine, path, "conflict", msg, digest)
    try:
        _archive(engine, info, path, dest, relpath, digest)
    except IntegrityError as exc:
        msg = f"database rejected the file: {str(exc.orig).splitlines()[0]}"
        return quarantine_file(home, engine, path, "conflict", msg, digest)
    return IngestResult(path.name, "ingested", None, f"{path.name}: ingested as {relpath}",
                        dest, digest)  # fmt: skip


def _archive(
    engine: Engine, info: RawInfo, src: Path, dest: Path, relpath: str, digest: str
) -> None:
    """Insert the rows, move the file, commit; move the file back if the commit fails."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    row = info.exposure_row()
    size = src.stat().st_size
    moved = False
    try:
        with session(engine) as s:
            if s.get(Exposure, row["expid"]) is None:
                s.add(Exposure(**row))
            s.add(
                RawFile(
                    expid=row["expid"],
                    ccdid=info.name.ccdid,
                    relpath=relpath,
                    filename=info.name.filename,
                    sha256=digest,
                    size=size,
                    status="ok",
                )
            )
            s.flush()
            if dest.exists():  # identical leftover of an interrupted ingest
                src.unlink()
            else:
                os.replace(src, dest)
                moved = True
    except BaseException:
        if moved and not src.exists():
            os.replace(dest, src)
        raise


def scan_incoming(home: Home) -> tuple[list[tuple[Path, RawName]], list[Path]]:
    """What ``HOME/incoming`` holds: raw files with their parsed names (sorted), and the
    strays -- directories and badly named files -- that ingest quarantines. Hidden names
    (a transfer tool's temporary files) are neither."""
    raw, strays = [], []
    for p in sorted(home.incoming.iterdir()):
        if p.name.startswith("."):
            continue
        try:
            name = parse_raw_name(p.name)
        except ValueError:
            name = None
        if name is not None and p.is_file():
            raw.append((p, name))
        else:
            strays.append(p)
    return raw, strays


def ingest_incoming(home: Home, engine: Engine) -> list[IngestResult]:
    """Ingest everything in ``HOME/incoming`` (sorted by name; hidden names are a transfer
    tool's and are skipped): one result per entry. Directories and badly named files are
    quarantined; files still being written are ``waiting``."""
    home.ensure()
    entries = sorted(p for p in home.incoming.iterdir() if not p.name.startswith("."))
    busy = still_changing(p for p in entries if p.is_file())
    return [IngestResult(p.name, "waiting", None, f"{p.name}: still being written; left in "
                         "incoming", p, None) if p in busy else ingest_file(home, engine, p)
            for p in entries]
