"""The ZTF alert Avro schema (``ztf.alert``), read in place from the shared reference data.

The schema is kept as versioned data, never copied into the package: the real ZTF files
(``alert.avsc``, ``candidate.avsc``, ``prv_candidate.avsc``, ``cutout.avsc``, ``fp_hist.avsc``,
v4.02) are parsed where they lie. ``alert.avsc`` refers to its sub-records by full name
(``ztf.alert.candidate``) while the files are named by short name (``candidate.avsc``), so the
default ``fastavro`` flat repository (which expects ``ztf.alert.candidate.avsc``) cannot resolve
them; :class:`_ShortNameRepository` maps a full name to its short-name file instead.

Locations:

* :func:`shared_dir` -- ``$ZSDS_SHARED``, else a folder ``shared`` beside the repository root;
* :func:`schema_dir` -- ``$ZSDS_ALERT_SCHEMA_DIR``, else ``<shared>/data/ztf-avro-alert/schema``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from fastavro.repository.base import AbstractSchemaRepository, SchemaRepositoryError
from fastavro.schema import load_schema

#: Environment variable naming the shared reference-data folder.
SHARED_ENV = "ZSDS_SHARED"
#: Environment variable naming a folder holding ``alert.avsc`` and its sub-schemas.
SCHEMA_ENV = "ZSDS_ALERT_SCHEMA_DIR"
#: Location of the alert schema inside the shared folder.
SCHEMA_SUBDIR = Path("data") / "ztf-avro-alert" / "schema"
#: Full name of the top-level alert record.
ALERT_RECORD = "ztf.alert"

_TSV_VERSION = re.compile(r"schema_fields_v(?P<version>[0-9][0-9.]*)\.tsv$")


def shared_dir() -> Path:
    """Locate the read-only shared reference data.

    Returns
    -------
    Path
        ``$ZSDS_SHARED`` if set, else the first folder named ``shared`` (holding ``data/``) that
        sits beside the current directory, this file, or any of their parents.

    Raises
    ------
    FileNotFoundError
        If ``$ZSDS_SHARED`` points nowhere, or no ``shared`` folder is found; the message lists
        every place searched.
    """
    env = os.environ.get(SHARED_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"${SHARED_ENV}={env!r} is not a folder")
        return path
    searched: list[str] = []
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            candidate = folder / "shared"
            if str(candidate) in searched:
                continue
            searched.append(str(candidate))
            # Require data/ so that an unrelated folder called "shared" is not taken.
            if (candidate / "data").is_dir():
                return candidate
    raise FileNotFoundError(
        f"shared reference data not found: set ${SHARED_ENV}, or place a folder 'shared' (with "
        f"'data/') beside the repository; searched {', '.join(searched)}"
    )


def schema_dir() -> Path:
    """Folder of the ZTF alert ``.avsc`` files (``$ZSDS_ALERT_SCHEMA_DIR`` overrides).

    Raises
    ------
    FileNotFoundError
        If the folder does not hold ``alert.avsc``.
    """
    env = os.environ.get(SCHEMA_ENV)
    path = Path(env).expanduser() if env else shared_dir() / SCHEMA_SUBDIR
    if not (path / "alert.avsc").is_file():
        source = f"${SCHEMA_ENV}" if env else "the shared data"
        raise FileNotFoundError(f"no alert.avsc in {path} (from {source})")
    return path


class _ShortNameRepository(AbstractSchemaRepository):
    """Resolve a named Avro type ``a.b.name`` to ``<folder>/name.avsc``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def load(self, name: str) -> dict[str, Any]:
        path = self.folder / f"{name.rsplit('.', 1)[-1]}.avsc"
        try:
            return json.loads(path.read_text())
        except OSError as exc:
            raise SchemaRepositoryError(f"cannot read schema {name!r} from {path}") from exc
        except json.JSONDecodeError as exc:
            raise SchemaRepositoryError(f"cannot parse schema {name!r} in {path}") from exc


@functools.lru_cache(maxsize=8)
def _load_cached(alert_avsc: str) -> dict[str, Any]:
    path = Path(alert_avsc)
    return load_schema(path.stem, repo=_ShortNameRepository(path.parent))


def load_alert_schema(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Parse the ``ztf.alert`` schema with its named sub-schemas inlined (cached).

    Parameters
    ----------
    path
        ``alert.avsc`` or the folder holding it; default :func:`schema_dir`.

    Returns
    -------
    dict
        The fastavro-parsed schema. It is shared between callers: do not modify it.
    """
    folder_or_file = Path(path) if path is not None else schema_dir()
    avsc = folder_or_file / "alert.avsc" if folder_or_file.is_dir() else folder_or_file
    if not avsc.is_file():
        raise FileNotFoundError(f"alert schema not found: {avsc}")
    schema = _load_cached(str(avsc.resolve()))
    if schema.get("name") != ALERT_RECORD:
        raise ValueError(f"{avsc} defines {schema.get('name')!r}, not {ALERT_RECORD!r}")
    return schema


def schema_version(schema: dict[str, Any] | None = None) -> str:
    """Version of an alert schema, e.g. ``"4.02"``.

    Read, in order, from the schema's ``version`` attribute (present in every real ZTF
    ``.avsc``), the default of its ``schemavsn`` field, and the ``schema_fields_v<V>.tsv`` file
    beside the schema folder.

    Raises
    ------
    LookupError
        If none of these gives a version.
    """
    schema = load_alert_schema() if schema is None else schema
    if schema.get("version"):
        return str(schema["version"])
    for field in schema.get("fields", []):
        if field["name"] == "schemavsn" and field.get("default"):
            return str(field["default"])
    try:
        tsv_folder = schema_dir().parent
    except FileNotFoundError:
        tsv_folder = None
    if tsv_folder is not None:
        for tsv in sorted(tsv_folder.glob("schema_fields_v*.tsv")):
            match = _TSV_VERSION.search(tsv.name)
            if match:
                return match["version"]
    raise LookupError(f"cannot tell the version of schema {schema.get('name')!r}")


def _named_records(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every named record of a parsed schema, by full name."""
    named = schema.get("__named_schemas")
    if named:
        return {k: v for k, v in named.items() if isinstance(v, dict) and v.get("type") == "record"}
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if node.get("type") == "record":
                found[node["name"]] = node
                for field in node["fields"]:
                    walk(field["type"])
            elif node.get("type") == "array":
                walk(node["items"])

    walk(schema)
    return found


def record_fields(schema: dict[str, Any] | None, name: str) -> list[tuple[str, Any]]:
    """Fields of one record of the alert schema, in schema order.

    Parameters
    ----------
    schema
        Parsed alert schema (default :func:`load_alert_schema`).
    name
        Short or full record name: ``candidate``, ``prv_candidate``, ``fp_hist``, ``cutout``,
        ``alert``.

    Returns
    -------
    list of (str, avro type)
        Field name and its Avro type (``"float"``, ``["null", "float"]``, a record dict...).
    """
    schema = load_alert_schema() if schema is None else schema
    records = _named_records(schema)
    for full, record in records.items():
        if full == name or full.rsplit(".", 1)[-1] == name:
            return [(f["name"], f["type"]) for f in record["fields"]]
    raise KeyError(f"no record {name!r} in schema (has {', '.join(sorted(records))})")
