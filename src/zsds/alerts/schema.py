"""The ZTF alert Avro schema (``ztf.alert``), shipped inside the package.

The real ZTF schema files (``alert.avsc``, ``candidate.avsc``, ``prv_candidate.avsc``,
``cutout.avsc``, ``fp_hist.avsc``; version :data:`DEFAULT_VERSION`) are package data under
``zsds/data/alert_schema/<version>/`` (see the README there for their provenance), loaded with
:mod:`importlib.resources`, so an installed wheel needs nothing outside itself.
``alert.avsc`` refers to its sub-records by full name (``ztf.alert.candidate``) while the files
are named by short name (``candidate.avsc``), so the default ``fastavro`` flat repository (which
expects ``ztf.alert.candidate.avsc``) cannot resolve them; :class:`_ShortNameRepository` maps a
full name to its short-name file instead.

:func:`schema_dir` is ``$ZSDS_ALERT_SCHEMA_DIR`` when set (another schema version, e.g. a
broker's), else the packaged folder of :data:`DEFAULT_VERSION`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from fastavro.repository.base import AbstractSchemaRepository, SchemaRepositoryError
from fastavro.schema import load_schema

#: Environment variable naming a folder holding ``alert.avsc`` and its sub-schemas.
SCHEMA_ENV = "ZSDS_ALERT_SCHEMA_DIR"
#: The schema version zsds writes by default (a sub-folder of the packaged ``alert_schema``).
DEFAULT_VERSION = "4.02"
#: Full name of the top-level alert record.
ALERT_RECORD = "ztf.alert"


@functools.cache
def packaged_schema_dir(version: str = DEFAULT_VERSION) -> Path:
    """Folder of the packaged ``.avsc`` files of one schema version.

    A regular install gives a real folder; from a zipped install the files are extracted once
    to a temporary folder that lives as long as the process.

    Raises
    ------
    FileNotFoundError
        If the package carries no such version.
    """
    folder = resources.files("zsds") / "data" / "alert_schema" / version
    if not folder.joinpath("alert.avsc").is_file():
        raise FileNotFoundError(f"zsds ships no alert schema version {version!r}")
    if isinstance(folder, Path):
        return folder
    stack = contextlib.ExitStack()  # zipped install: extract, remove at exit
    atexit.register(stack.close)
    return stack.enter_context(resources.as_file(folder))


def schema_dir() -> Path:
    """Folder of the ZTF alert ``.avsc`` files (``$ZSDS_ALERT_SCHEMA_DIR`` overrides).

    Raises
    ------
    FileNotFoundError
        If ``$ZSDS_ALERT_SCHEMA_DIR`` is set to a folder without ``alert.avsc``.
    """
    env = os.environ.get(SCHEMA_ENV)
    if not env:
        return packaged_schema_dir()
    path = Path(env).expanduser()
    if not (path / "alert.avsc").is_file():
        raise FileNotFoundError(f"no alert.avsc in {path} (from ${SCHEMA_ENV})")
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

    Read from the schema's ``version`` attribute (present in every real ZTF ``.avsc``), else
    the default of its ``schemavsn`` field.

    Raises
    ------
    LookupError
        If neither gives a version.
    """
    schema = load_alert_schema() if schema is None else schema
    if schema.get("version"):
        return str(schema["version"])
    for field in schema.get("fields", []):
        if field["name"] == "schemavsn" and field.get("default"):
            return str(field["default"])
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
