"""The nightly alert archive on disk, and reading packets from files, folders and tarballs.

Layout (one folder per Kafka topic, one file per packet, as ``ztf-go-archivist`` keeps them)::

    <alerts_root>/ztf_YYYYMMDD_programidN/<candid>.avro

:func:`pack_night` turns a night's folder into the UW public-archive tarball,
``ztf_public_YYYYMMDD.tar.gz`` (``partnership`` / ``caltech`` for programid 2 / 3), whose members
are the ``<candid>.avro`` files.
"""

from __future__ import annotations

import gzip
import os
import secrets
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from zsds.alerts.kafka import PROGRAMS, parse_topic

#: Suffixes of tarballs read by :func:`iter_archive`.
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def archive_dir(alerts_root: str | os.PathLike[str], topic: str) -> Path:
    """Folder of one topic's packets: ``alerts_root / topic``.

    Raises
    ------
    ValueError
        If ``topic`` is not a ``ztf_YYYYMMDD_programidN`` name (so it cannot escape the root).
    """
    parse_topic(topic)
    return Path(alerts_root) / topic


def packet_name(candid: int) -> str:
    """File name of a packet: ``<candid>.avro``."""
    return f"{int(candid)}.avro"


#: Mode of archived files before the umask (``rw-rw-rw-`` & ~umask: 0644 under umask 022), as
#: for any file a program creates: ``tempfile.mkstemp`` would make them 0600, unreadable by a
#: web server or another user.
FILE_MODE = 0o666


def _new_temporary(path: Path) -> tuple[int, Path]:
    """Open a new temporary file next to ``path`` (mode :data:`FILE_MODE` & ~umask)."""
    while True:
        # The writer's process id lets a later run tell a temporary file left by a killed
        # writer (zsds.io.fitsio.remove_stale_temporaries).
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half."""
    fd, tmp = _new_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fo:
            fo.write(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_packet(
    alerts_root: str | os.PathLike[str], topic: str, candid: int, payload: bytes
) -> Path:
    """Store one packet as ``<alerts_root>/<topic>/<candid>.avro``.

    Atomic (temporary file + rename) and idempotent: writing the same ``candid`` again replaces
    the file, so a re-delivered Kafka message never makes a duplicate. The file is readable
    as the umask allows (:data:`FILE_MODE`), like the folder created for it.
    """
    folder = archive_dir(alerts_root, topic)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / packet_name(candid)
    _atomic_write(path, payload)
    return path


def _is_tarball(path: Path) -> bool:
    return path.name.endswith(TAR_SUFFIXES)


def _iter_tarball(path: Path) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path, mode="r:*") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".avro"):
                fo = tar.extractfile(member)
                if fo is not None:
                    yield f"{path}:{member.name}", fo.read()


def iter_archive(paths: Iterable[str | os.PathLike[str]]) -> Iterator[tuple[str, bytes]]:
    """Packets from ``.avro`` files, folders and tarballs.

    Parameters
    ----------
    paths
        ``.avro`` files; folders (searched recursively, in sorted order, for ``.avro`` files
        and tarballs); ``.tar.gz`` / ``.tgz`` / ``.tar`` archives of ``.avro`` files.

    Yields
    ------
    label, payload
        ``label`` is the file path, or ``<tarball>:<member>`` for a tar member.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If a file given explicitly is neither ``.avro`` nor a tarball.
    """
    for item in paths:
        path = Path(item)
        if path.is_dir():
            for sub in sorted(path.rglob("*")):
                if sub.is_file() and sub.suffix == ".avro":
                    yield str(sub), sub.read_bytes()
                elif sub.is_file() and _is_tarball(sub):
                    yield from _iter_tarball(sub)
        elif path.is_file():
            if _is_tarball(path):
                yield from _iter_tarball(path)
            elif path.suffix == ".avro":
                yield str(path), path.read_bytes()
            else:
                raise ValueError(f"{path}: not an .avro packet nor a .tar.gz/.tgz archive")
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def tarball_name(topic: str) -> str:
    """UW archive name of a topic's tarball, e.g. ``ztf_public_20261120.tar.gz``."""
    night, programid = parse_topic(topic)
    return f"ztf_{PROGRAMS[programid]}_{night:%Y%m%d}.tar.gz"


def pack_night(
    alerts_root: str | os.PathLike[str], topic: str, out_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Pack a topic's packets into ``ztf_<program>_YYYYMMDD.tar.gz``.

    Members are ``<candid>.avro``, sorted by candid; member times, owners and the gzip
    timestamp are fixed, so the same packets always give the same tarball bytes.

    Parameters
    ----------
    alerts_root
        Archive root holding ``<topic>/``.
    topic
        ``ztf_YYYYMMDD_programidN``.
    out_dir
        Where to write the tarball (default ``alerts_root``).

    Returns
    -------
    Path
        The tarball, written atomically.
    """
    folder = archive_dir(alerts_root, topic)
    if not folder.is_dir():
        raise FileNotFoundError(f"no packets for {topic}: {folder} does not exist")
    packets = sorted(
        (p for p in folder.glob("*.avro") if p.stem.isdigit()), key=lambda p: int(p.stem)
    )
    target = Path(out_dir if out_dir is not None else alerts_root) / tarball_name(topic)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _new_temporary(target)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for packet in packets:
                info = tar.gettarinfo(str(packet), arcname=packet.name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o644
                with packet.open("rb") as fo:
                    tar.addfile(info, fo)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
