"""Atomic FITS product writing.

Every product is written to a hidden temporary file next to its final name and renamed into
place, so a reader never sees half a file and re-running a step replaces a product whole.
A write that fails (a full disk, a quota, an I/O error) removes its temporary file and raises
:class:`ProductWriteError`, which names the product and says why (issue 19): the previous
version of the product, if any, is left as it was. A process killed while writing leaves its
temporary file (``.NAME.tmpPID``); :func:`remove_stale_temporaries` removes those of
processes that are gone.

Every product's primary header records the zsds version (``ZSDSVER``) and, when written by a
pipeline step, the hash of the pipeline configuration that made it (``CFGHASH``, issue 21;
``zsds config show --hash H`` prints that configuration): a runner passes the hash to the
writers explicitly (``config_hash=``) or sets it for a block with :func:`config_provenance`.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from zsds import __version__

#: Errors of a full file system (no space, or a quota reached).
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
#: Temporary files of the atomic writers: ``.NAME.tmpPID`` (here) and ``.NAME.PID.HEX.tmp``
#: (alert packets, :mod:`zsds.alerts.archive`), with the writing process's id.
_TEMPORARY = re.compile(r"^\..+\.(?:tmp(?P<pid>\d+)|(?P<pid2>\d+)\.[0-9a-f]+\.tmp)$")


class ProductWriteError(OSError):
    """A product could not be written; ``filename`` is the product's path.

    Keeps the ``errno`` of the failure (``ENOSPC`` for a full disk), so callers can tell the
    causes apart; the message names the product and, for a full disk, says so.
    """

    @classmethod
    def wrap(cls, exc: OSError, path: Path) -> ProductWriteError:
        """The error of writing ``path`` that failed with ``exc``."""
        why = exc.strerror or str(exc) or type(exc).__name__
        code = exc.errno
        if code is None and "not enough space" in why.lower():
            code = errno.ENOSPC  # astropy checks the free space itself, without an errno
        if code in DISK_FULL:
            why += f" (the file system of {path.parent} is full)"
        return cls(code or errno.EIO, f"cannot write product: {why}", str(path))


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` on a temporary name next to it, then rename.

    On any failure the temporary file is removed and ``path`` is left as it was; an
    ``OSError`` is raised again as :class:`ProductWriteError` naming ``path``.
    """
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        if isinstance(exc, ProductWriteError):
            raise
        raise ProductWriteError.wrap(exc, path) from exc
    except BaseException:
        _discard(tmp)
        raise
    return path


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:  # pragma: no cover - nothing more can be done
        pass


def write_text(path: Path, text: str) -> Path:
    """Write a text product (a log) atomically, as :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_hdul(hdul: fits.HDUList, path: Path, config_hash: str | None = None) -> Path:
    """Write an HDU list atomically (temporary name, then rename), with FITS checksums.

    Inside a pipeline step (a configuration hash given, or set by :func:`config_provenance`)
    the primary header is stamped as :func:`stamp_header` does (``ZSDSVER``, ``CFGHASH``);
    outside one (the simulator's raw files) it is written as given.

    Raises
    ------
    ProductWriteError
        If it cannot be written (disk full...); nothing is left behind.
    """
    if _config_hash(config_hash):
        hdul[0].header = stamp_header(hdul[0].header, config_hash)
    return atomic_write(path, lambda tmp: hdul.writeto(tmp, overwrite=True, checksum=True))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def stale_temporaries(root: Path) -> list[Path]:
    """Temporary files under ``root`` left by writers that are gone (killed mid-write).

    Only files named as the atomic writers name them, with the id of a process that no longer
    exists on this machine, are listed.
    """
    out = []
    if not root.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            m = _TEMPORARY.match(name)
            if m and not _pid_alive(int(m["pid"] or m["pid2"])):
                out.append(Path(dirpath) / name)
    return sorted(out)


def remove_stale_temporaries(root: Path) -> int:
    """Remove :func:`stale_temporaries` of ``root``; returns how many were removed."""
    n = 0
    for path in stale_temporaries(root):
        try:
            path.unlink()
            n += 1
        except FileNotFoundError:
            pass
    return n


#: Hash of the pipeline configuration of the products being written (:func:`config_provenance`).
_CONFIG_HASH: ContextVar[str | None] = ContextVar("zsds_config_hash", default=None)


@contextmanager
def config_provenance(config_hash: str | None) -> Iterator[None]:
    """Products written inside the block record ``CFGHASH = config_hash``.

    Parameters
    ----------
    config_hash : str or None
        :meth:`zsds.config.PipelineConfig.config_hash` of the configuration the step runs
        with (``None``: no configuration recorded).

    Notes
    -----
    The hash lives in a :class:`contextvars.ContextVar`: it holds for the thread (or task)
    that set it only, so concurrent steps in one process (Dask worker threads) never see each
    other's.
    """
    token = _CONFIG_HASH.set(config_hash)
    try:
        yield
    finally:
        _CONFIG_HASH.reset(token)


def _config_hash(explicit: str | None) -> str | None:
    return explicit or _CONFIG_HASH.get()


def current_config_hash() -> str | None:
    """The configuration hash set by :func:`config_provenance` for this thread (or None), for
    writers of products that are not FITS files (matchfiles)."""
    return _CONFIG_HASH.get()


def stamp_header(header: fits.Header | None = None,
                 config_hash: str | None = None) -> fits.Header:
    """Copy of a header with the software version and the configuration hash recorded.

    Parameters
    ----------
    header : Header or None
        Header to copy (``None``: an empty one).
    config_hash : str or None
        Hash of the pipeline configuration that made the product (``CFGHASH``); ``None``
        takes the one set by :func:`config_provenance`, if any. A ``CFGHASH`` copied from an
        input's header is removed when there is none: it would name another step's
        configuration.

    Returns
    -------
    Header
    """
    h = fits.Header() if header is None else header.copy()
    h["ZSDSVER"] = (__version__, "zsds software version")
    cfg = _config_hash(config_hash)
    if cfg:
        h.set("CFGHASH", cfg, "zsds config hash (zsds config show --hash)",
              after="ZSDSVER")
    else:
        h.remove("CFGHASH", ignore_missing=True, remove_all=True)
    return h


def write_image(
    path: Path,
    data: np.ndarray,
    header: fits.Header | None = None,
    extra: list[fits.ImageHDU] | None = None,
    config_hash: str | None = None,
) -> Path:
    """Write an image product (primary HDU) atomically, its header stamped
    (:func:`stamp_header`)."""
    hdul = fits.HDUList([fits.PrimaryHDU(data, header=stamp_header(header, config_hash)),
                         *(extra or [])])
    return write_hdul(hdul, path)


def write_table(
    path: Path, table: Table, header: fits.Header | None = None, name: str = "CATALOG",
    config_hash: str | None = None,
) -> Path:
    """Write a FITS binary-table product (header-only primary, stamped by
    :func:`stamp_header`, + one table) atomically."""
    hdu = fits.table_to_hdu(table)
    hdu.name = name
    hdul = fits.HDUList([fits.PrimaryHDU(header=stamp_header(header, config_hash)), hdu])
    return write_hdul(hdul, path)
