"""``zsds import``: IPAC products and raw CCD files filed into a home like zsds's own.

Each file is recognised by name and content (:func:`zsds.ingest.ipac.recognise`; raw CCD files
by :func:`zsds.ingest.validate.validate_raw` through the ordinary ingest), **copied** (the
original is never touched) into the IRSA layout of the home and registered as zsds registers
its own products:

* science products (``sciimg``, ``mskimg``, ``psfcat``, ``sexcat``,
  ``scimrefdiffimg.fits.fz``, ``diffimgpsf.fits``) go to ``products/sci/YYYY/MMDD/ffffff/``
  with a ``quadrant_products`` row each (``pid`` from the exposure id), plus the ``exposures``
  row of their exposure when it is new (from the header: ``EXPID``, else ``OBSMJD``; ``TELRA``/
  ``TELDEC`` sexagesimal); a difference image also gets its ``diff_images`` row, so forced
  photometry (:mod:`zsds.diffim.forced`) and the alert history use it as zsds's own;
* a ``refimg`` becomes a new **version** of the quadrant's reference
  (``products/ref/.../q<Q>/v<NNN>/``, a ``references`` row with zsds's ``rfid``), and its
  ``refunc``, ``refcov``, ``refpsfcat``, ``refsexcat`` go next to it (the latest imported
  ``refimg`` of the quadrant);
* a raw CCD file is copied into ``HOME/incoming`` and ingested (:func:`zsds.ingest.ingest_file`).

Every import is a ``jobs`` row (stage ``import``, key the product path) whose inputs hold the
source path and the sha256 of the imported file, so importing the same file again is a
``duplicate`` even after ``zsds calibrate`` has re-derived the product in place. A file that is
not an importable product, or that conflicts with what the home holds, is refused: a copy goes
to ``HOME/quarantine`` with a ``<name>.reason.json`` sidecar and a ``quarantine`` row, as for
raw-file ingest (:func:`zsds.ingest.quarantine_file`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from astropy.io import fits
from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from zsds.core.home import Home
from zsds.core.instrument import rcid_of
from zsds.core.naming import expid_of, nid_of, parse_night, parse_raw_name, pid_of, ref_product
from zsds.core.rawformat import obs_mjd, pointing_deg
from zsds.core.wcs import image_footprint
from zsds.db.engine import session
from zsds.db.jobs import job
from zsds.db.schema import DiffImageRecord, Exposure, Job, QuadrantProduct, Reference
from zsds.ingest.core import quarantine_file, sha256_of
from zsds.ingest.ipac import (
    IpacProduct,
    ProductError,
    header_float,
    parse_product_name,
    recognise,
    seeing_arcsec,
)
from zsds.ingest.validate import RawFileError

__all__ = ["IMPORT_STAGE", "ImportResult", "expand_paths", "import_file", "import_paths"]

#: ``jobs.stage`` of imports.
IMPORT_STAGE = "import"
#: Import order: raw files, then science images before the products that refer to them, then
#: reference images before theirs.
_ORDER = {"raw": 0, "sciimg": 1, "mskimg": 2, "psfcat": 3, "sexcat": 3, "refimg": 4, "refunc": 5,
          "refcov": 5, "refpsfcat": 5, "refsexcat": 5, "scimrefdiffimg": 6, "diffimgpsf": 7}
_VERSION_RE = re.compile(r"/v(\d{3})/[^/]+$")

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ImportResult:
    """Outcome of importing one file.

    Attributes
    ----------
    file : str
        File name.
    status : str
        ``imported``, ``duplicate`` (the identical file is already imported; nothing changed)
        or ``quarantined`` (refused; a copy is in ``HOME/quarantine``).
    kind : str or None
        Product kind (``sciimg``, ..., ``refimg``, ..., ``raw``), None when not recognised.
    reason : str or None
        Machine code when refused (:class:`zsds.ingest.ipac.ProductError`,
        :class:`zsds.ingest.validate.RawFileError`).
    message : str
        One line naming the file and what happened.
    path : Path or None
        Where the file (or its refused copy) is now in the home.
    sha256 : str or None
    """

    file: str
    status: str
    kind: str | None
    reason: str | None
    message: str
    path: Path | None
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        """True unless the file was refused."""
        return self.status != "quarantined"


def _kind_of(name: str) -> str | None:
    try:
        parse_raw_name(name)
        return "raw"
    except ValueError:
        pass
    try:
        return parse_product_name(name).kind
    except ProductError:
        return None


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files to import: each file given, and every file under each folder given (recursively,
    hidden ones left out), in import order (raw files, science images, their products,
    reference images, theirs; unrecognised names last), each file once."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += [f for f in sorted(p.rglob("*")) if f.is_file()
                      and not any(part.startswith(".") for part in f.relative_to(p).parts)]
        else:
            files.append(p)
    unique = list(dict.fromkeys(files))
    return sorted(unique, key=lambda f: (_ORDER.get(_kind_of(f.name) or "", 9), f.name))


def import_paths(home: Home, engine: Engine, paths: Iterable[str | os.PathLike],
                 progress: ProgressFn | None = None) -> list[ImportResult]:
    """Import files and folders (:func:`expand_paths`); one result per file, in import order.

    One file's refusal never stops the others.
    """
    home.ensure()
    files = expand_paths(paths)
    out = []
    for k, f in enumerate(files):
        out.append(import_file(home, engine, f))
        if progress:
            progress(f.name, k + 1, len(files))
    return out


def import_file(home: Home, engine: Engine, path: str | os.PathLike) -> ImportResult:
    """Import one IPAC product or raw CCD file into the home (see the module docstring).

    Parameters
    ----------
    home : Home
    engine : Engine
        Database with the zsds schema (:func:`zsds.db.init_db`).
    path : path-like
        The file, named as IRSA serves it; it is copied, never moved or changed.

    Returns
    -------
    ImportResult
    """
    path = Path(path)
    home.ensure()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if _kind_of(path.name) == "raw":
        return _import_raw(home, engine, path)
    digest = sha256_of(path)
    kind = None
    try:
        prod = recognise(path)
        kind = prod.kind
        if prod.name.is_reference:
            return _import_reference(home, engine, path, prod, digest)
        return _import_science(home, engine, path, prod, digest)
    except ProductError as exc:
        return _refuse(home, engine, path, kind, exc.reason, exc.message, digest)


# ------------------------------------------------------------------------------ helpers


def _refuse(home: Home, engine: Engine, src: Path, kind: str | None, reason: str, message: str,
            digest: str | None) -> ImportResult:
    """Quarantine a copy of a refused file (the original stays where it is)."""
    staging = home.root / ".import"
    staging.mkdir(parents=True, exist_ok=True)
    tmp = staging / src.name
    shutil.copy2(src, tmp)
    q = quarantine_file(home, engine, tmp, reason, message, digest)
    return ImportResult(src.name, "quarantined", kind, reason, q.message, q.path, digest)


def _imports_under(engine: Engine, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, inputs) of the finished imports whose product path starts with ``prefix``."""
    with session(engine) as s:
        rows = s.execute(select(Job.key, Job.inputs).where(
            Job.stage == IMPORT_STAGE, Job.state == "done", Job.key.startswith(prefix))).all()
    return [(k, dict(i or {})) for k, i in rows]


def _copy_in(src: Path, dest: Path) -> Path:
    """Copy ``src`` to a hidden temporary file next to ``dest``; returns the temporary path."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.import{os.getpid()}")
    shutil.copy2(src, tmp)
    return tmp


@contextmanager
def _importing(engine: Engine, src: Path, dest: Path, rel: str, inputs: dict[str, Any],
               what: str) -> Iterator[Session]:
    """Import ``src`` as ``dest`` (``rel``) in one import job: the caller adds its rows in the
    yielded session; once they are flushed, a copy of ``src`` takes ``dest``'s place. A
    database conflict is a ``conflict`` :class:`ProductError` about the ``what``; the copy
    never stays behind."""
    tmp = _copy_in(src, dest)
    try:
        with job(engine, IMPORT_STAGE, rel, inputs=inputs), session(engine) as s:
            yield s
            s.flush()
            os.replace(tmp, dest)
    except IntegrityError as exc:
        raise ProductError("conflict", f"database rejected the {what}: "
                                       f"{str(exc.orig).splitlines()[0]}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _duplicate(src: Path, rel: str, dest: Path, digest: str, kind: str) -> ImportResult:
    return ImportResult(src.name, "duplicate", kind, None,
                        f"{src.name}: already imported as {rel} (identical)", dest, digest)


def _shape_of(path: Path) -> tuple[int, int] | None:
    try:
        h = fits.getheader(path, 0)
    except (OSError, ValueError):
        return None
    return (int(h["NAXIS2"]), int(h["NAXIS1"])) if h.get("NAXIS", 0) == 2 else None


def _check_shape(prod: IpacProduct, image: Path | None, what: str) -> None:
    if prod.shape is None or image is None or not image.exists():
        return
    want = _shape_of(image)
    if want is not None and want != prod.shape:
        raise ProductError("bad_value", f"shape {prod.shape} differs from its {what} "
                                        f"{image.name} {want}")


# ------------------------------------------------------------------------------ raw


def _import_raw(home: Home, engine: Engine, src: Path) -> ImportResult:
    """Copy a raw CCD file into ``HOME/incoming`` and ingest it."""
    digest = sha256_of(src)
    dest = home.incoming / src.name
    if dest.exists() and sha256_of(dest) != digest:
        return _refuse(home, engine, src, "raw", "conflict",
                       f"a different file of that name waits in {home.incoming}; ingest or "
                       "remove it first", digest)
    if not dest.exists():
        os.replace(_copy_in(src, dest), dest)
    r = _ingest(home, engine, dest)
    status = "imported" if r.status == "ingested" else r.status
    return ImportResult(src.name, status, "raw", r.reason, r.message, r.path, r.sha256)


def _ingest(home: Home, engine: Engine, path: Path):
    from zsds.ingest.core import ingest_file

    try:
        return ingest_file(home, engine, path)
    except RawFileError as exc:  # pragma: no cover - ingest_file quarantines these itself
        raise ProductError(exc.reason, exc.message) from None


# ------------------------------------------------------------------------------ science


def _exposure(engine: Engine, prod: IpacProduct) -> tuple[int, dict[str, Any] | None]:
    """The exposure id of a science product, and the ``exposures`` row to add if it is new.

    An exposure the home already knows (same ``filefracday`` and field, e.g. from its raw file)
    keeps its id; else the id is the header's ``EXPID`` (IPAC's), else derived from ``OBSMJD``
    (:func:`zsds.core.naming.expid_of`, which gives IPAC's id for the real files at hand).
    """
    name, h = prod.name, prod.header
    ffd = name.filefracday
    assert ffd is not None
    with session(engine) as s:
        known = s.scalars(select(Exposure).where(Exposure.filefracday == ffd,
                                                 Exposure.field == name.field)).first()
        if known is not None:
            if known.fid != name.filt.fid:
                raise ProductError("conflict", f"exposure {known.expid} ({ffd}) is in filter "
                                               f"{known.fid}, the name says {name.filt.code}")
            return int(known.expid), None
    if not ("OBSJD" in h or "OBSMJD" in h) or "EXPTIME" not in h:
        raise ProductError("no_exposure", f"no exposure {ffd} of field {name.field} is known and "
                                          "the header does not describe one (OBSJD, EXPTIME): "
                                          "import its sciimg or raw file first")
    mjd = obs_mjd(h)
    expid = next((int(h[k]) for k in ("EXPID", "DBEXPID") if k in h), expid_of(mjd))
    with session(engine) as s:
        other = s.get(Exposure, expid)
        if other is not None and other.filefracday != ffd:
            raise ProductError("conflict", f"exposure id {expid} is already the exposure "
                                           f"{other.filefracday}, not {ffd}")
    night = parse_night(ffd[:8])
    ra, dec = pointing_deg(h)
    imgtype = str(h.get("IMGTYPE", "object")).strip() or "object"
    return expid, {
        "expid": expid, "mjd": mjd, "field": name.field, "fid": name.filt.fid,
        "imgtype": imgtype, "programid": int(h.get("PROGRMID", 0)),
        "exptime": float(h["EXPTIME"]), "airmass": header_float(h, "AIRMASS"), "ra": ra,
        "dec": dec, "filefracday": ffd, "night": night, "nid": nid_of(night),
    }


def _diff_image_row(s: Session, prod: IpacProduct, pid: int, expid: int,
                    rel: str) -> DiffImageRecord:
    """The ``diff_images`` row of an imported IPAC difference image, as zsds's own subtraction
    records it, so that forced photometry and the alert history see it.

    Its reference is the quadrant's latest reference in the home (IPAC's, when its refimg was
    imported first), else IPAC's ``RFID`` from the header, else -999 (ZTF's "none"); ``jd`` is
    the mid-exposure time, ``diffmaglim`` IPAC's ``DIFFMLIM`` when the header has it.
    """
    name, h = prod.name, prod.header
    exp = s.get(Exposure, expid)
    assert exp is not None and prod.shape is not None
    rfid = s.scalars(select(Reference.rfid).where(
        Reference.field == name.field, Reference.fid == name.filt.fid,
        Reference.ccdid == name.ccdid, Reference.qid == name.qid
    ).order_by(Reference.version.desc())).first()
    if rfid is None:
        rfid = next((int(h[k]) for k in ("RFID", "DBRFID") if k in h), -999)
    ra, dec, radius = image_footprint(h, prod.shape)
    jd = (obs_mjd(h) if "OBSJD" in h or "OBSMJD" in h else exp.mjd) + 2400000.5 \
        + 0.5 * float(h.get("EXPTIME", exp.exptime)) / 86400.0
    return DiffImageRecord(
        pid=pid, expid=expid, nid=exp.nid, field=name.field, ccdid=name.ccdid, qid=name.qid,
        rcid=rcid_of(name.ccdid, name.qid), fid=name.filt.fid, programid=exp.programid, jd=jd,
        rfid=rfid, ra=ra, dec=dec, radius=radius, diffmaglim=header_float(h, "DIFFMLIM"),
        magzp=header_float(h, "MAGZP"), relpath=rel, ncand=0)


def _sciimg_row(engine: Engine, pid: int) -> QuadrantProduct | None:
    with session(engine) as s:
        row = s.scalars(select(QuadrantProduct).where(QuadrantProduct.pid == pid,
                                                      QuadrantProduct.kind == "sciimg")).first()
        if row is not None:
            s.expunge(row)
        return row


def _registered(engine: Engine, rel: str) -> bool:
    with session(engine) as s:
        return s.scalars(select(QuadrantProduct.id).where(QuadrantProduct.relpath == rel)
                         ).first() is not None


def _import_science(home: Home, engine: Engine, src: Path, prod: IpacProduct,
                    digest: str) -> ImportResult:
    name, h = prod.name, prod.header
    rel = name.relpath().as_posix()
    dest = home.path(rel)
    done = dict(_imports_under(engine, rel))
    same = done.get(rel, {}).get("sha256") == digest or (dest.exists()
                                                         and sha256_of(dest) == digest)
    if same and dest.exists() and _registered(engine, rel):
        return _duplicate(src, rel, dest, digest, name.kind)
    if dest.exists() and not same:
        raise ProductError("conflict", f"differs from the archived {rel} (sha256 "
                                       f"{sha256_of(dest)[:12]}...)")
    expid, exp_row = _exposure(engine, prod)
    pid = pid_of(expid, name.ccdid, name.qid)
    sci = _sciimg_row(engine, pid)
    if name.kind not in ("sciimg", "diffimgpsf"):
        _check_shape(prod, home.path(sci.relpath) if sci is not None else None, "sciimg")
    if name.kind == "sciimg":
        qa = {"infobits": int(h.get("INFOBITS", 0) or 0), "seeing": seeing_arcsec(h),
              "maglim": header_float(h, "MAGLIM"), "magzp": header_float(h, "MAGZP"),
              "magzpunc": header_float(h, "MAGZPUNC"), "clrcoeff": header_float(h, "CLRCOEFF")}
    elif sci is not None:  # as zsds does: every product of a quadrant carries its QA
        qa = {k: getattr(sci, k) for k in ("infobits", "seeing", "maglim", "magzp", "magzpunc",
                                           "clrcoeff")}
    else:
        qa = {"infobits": 0}
    row = {"pid": pid, "expid": expid, "ccdid": name.ccdid, "qid": name.qid,
           "rcid": rcid_of(name.ccdid, name.qid), "field": name.field, "fid": name.filt.fid,
           "kind": name.kind, "relpath": rel, "nsources": prod.nrows, **qa}
    inputs = {"source": str(src.resolve()), "sha256": digest, "kind": name.kind, "pid": pid}
    if "EXPID" in h and int(h["EXPID"]) != expid:
        inputs["ipac_expid"] = int(h["EXPID"])
    with _importing(engine, src, dest, rel, inputs, "product") as s:
        if exp_row is not None and s.get(Exposure, expid) is None:
            s.add(Exposure(**exp_row))
        s.execute(delete(QuadrantProduct).where(
            ((QuadrantProduct.pid == pid) & (QuadrantProduct.kind == name.kind))
            | (QuadrantProduct.relpath == rel)))
        s.add(QuadrantProduct(**row))
        if name.kind == "scimrefdiffimg":
            s.execute(delete(DiffImageRecord).where(DiffImageRecord.pid == pid))
            s.flush()
            s.add(_diff_image_row(s, prod, pid, expid, rel))
    return ImportResult(src.name, "imported", name.kind, None,
                        f"{src.name}: imported as {rel} (pid {pid})", dest, digest)


# ------------------------------------------------------------------------------ references


def _version_of(rel: str) -> int | None:
    m = _VERSION_RE.search(rel)
    return int(m.group(1)) if m else None


def _import_reference(home: Home, engine: Engine, src: Path, prod: IpacProduct,
                      digest: str) -> ImportResult:
    from zsds.refs.run import make_rfid, ref_version_product

    name, h = prod.name, prod.header
    f, filt, c, q = name.field, name.filt, name.ccdid, name.qid
    prefix = ref_product(f, filt, c, q, name.suffix).parent.as_posix() + "/"
    done = _imports_under(engine, prefix)
    for key, inp in done:  # the same file imported before (whatever version it went to)
        if inp.get("sha256") == digest and key.endswith("_" + name.suffix):
            dest = home.path(key)
            if dest.exists():
                return _duplicate(src, key, dest, digest, name.kind)
    if name.kind == "refimg":
        with session(engine) as s:
            versions = s.scalars(select(Reference.version).where(
                Reference.field == f, Reference.ccdid == c, Reference.qid == q,
                Reference.fid == filt.fid)).all()
        version = max(versions, default=0) + 1
    else:
        imported = [v for k, inp in done if inp.get("kind") == "refimg"
                    and (v := _version_of(k)) is not None]
        if not imported:
            raise ProductError("no_reference", f"no IPAC refimg of field {f} {filt.code} "
                                               f"c{c:02d} q{q} is imported: import the refimg "
                                               "first (its refunc, refcov and catalogues go "
                                               "next to it)")
        version = max(imported)
    rel = ref_version_product(f, filt, c, q, version, name.suffix).as_posix()
    dest = home.path(rel)
    if name.kind != "refimg":
        refimg = home.path(ref_version_product(f, filt, c, q, version, "refimg.fits"))
        _check_shape(prod, refimg, "refimg")
        if dest.exists():
            raise ProductError("conflict", f"the imported reference version {version} already "
                                           f"has a different {name.suffix} ({rel})")
    inputs: dict[str, Any] = {"source": str(src.resolve()), "sha256": digest,
                              "kind": name.kind, "version": version}
    ref_row = None
    if name.kind == "refimg":
        rfid = make_rfid(f, filt.fid, version, c, q)
        for key in ("RFID", "DBRFID"):
            if key in h:
                inputs["ipac_rfid"] = int(h[key])
        jd = [next((header_float(h, k) for k in keys if header_float(h, k) is not None), None)
              for keys in (("JDSTART", "JDSTARTREF", "STARTJD"), ("JDEND", "JDENDREF", "ENDJD"))]
        ref_row = Reference(
            rfid=rfid, field=f, ccdid=c, qid=q, fid=filt.fid, version=version,
            nframes=int(h.get("NFRAMES", 0) or 0),
            jdstart=-999.0 if jd[0] is None else jd[0], jdend=-999.0 if jd[1] is None else jd[1],
            input_pids=[], relpath=rel, maglim=header_float(h, "MAGLIM"),
            seeing=seeing_arcsec(h))
        inputs["rfid"] = rfid
    with _importing(engine, src, dest, rel, inputs, "reference") as s:
        if ref_row is not None:
            s.add(ref_row)
    what = f" (rfid {ref_row.rfid}, version {version})" if ref_row is not None else ""
    return ImportResult(src.name, "imported", name.kind, None,
                        f"{src.name}: imported as {rel}{what}", dest, digest)
