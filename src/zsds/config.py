"""The pipeline configuration: every stage's settings in one frozen object, one TOML file.

:class:`PipelineConfig` holds the configuration of every stage the executive runs (split,
calibration frames, instrumental calibration, references, subtraction, streaks, moving
objects, light curves), each the stage's own frozen dataclass at its defaults unless a TOML
file says otherwise::

    [instcal.mask]
    cosmic_rays = false

    [diffim.cuts]
    min_snr = 6.0

Every key is optional (a key left out keeps its default); an unknown key is an error naming
it and the file. ``zsds config show`` prints the whole configuration as such a file.

Configuration is provenance (issue 21): :meth:`PipelineConfig.config_hash` is the first 16
hex digits of the SHA-256 of the configuration's canonical JSON (sorted keys, every value of
its declared type); the runners record the configuration in the database (``configs``,
:func:`record_config`) and its hash in the header of every product they write (``CFGHASH``,
beside the zsds version ``ZSDSVER``, which is not part of the hash). ``zsds config show --hash
H`` prints the configuration that made a product.

This module sits above the stages (it imports each stage's configuration class); the stages'
runners import it, so a stage's configuration class lives in a module of its own, never in
its runner (e.g. :mod:`zsds.diffim.config`), and no stage imports its runner's module here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import tomllib
import types
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from zsds import __version__
from zsds.calib.config import CalibBuildConfig
from zsds.db.engine import session
from zsds.db.schema import ConfigRecord
from zsds.diffim.config import SubtractRunConfig
from zsds.instcal.stage import InstCalConfig
from zsds.lightcurves.build import LightCurveConfig
from zsds.moving.run import LinkRunConfig
from zsds.refs.config import RefBuildConfig
from zsds.split.split import SplitConfig
from zsds.streaks.base import StreakConfig

__all__ = [
    "HASH_LENGTH",
    "ConfigError",
    "PipelineConfig",
    "config_toml",
    "hash_of_json",
    "load_config",
    "record_config",
    "stored_config",
]

#: Hex digits of the SHA-256 kept as the configuration hash (``CFGHASH``).
HASH_LENGTH = 16


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the file and
    the key."""


@dataclass(frozen=True)
class PipelineConfig:
    """The settings of every stage of the pipeline, each stage's own frozen dataclass.

    ``split`` (overscan, linearity) serves ``calib`` and ``instcal``; ``instcal`` covers masks,
    detection, PSF, astrometry and the photometric zero point (ZP); ``diffim`` subtraction,
    candidates, real-bogus scoring, known objects and the packet cuts.
    """

    split: SplitConfig = field(default_factory=SplitConfig)  #: overscan, linearity (calib, instcal)
    calib: CalibBuildConfig = field(default_factory=CalibBuildConfig)  #: master biases and flats
    instcal: InstCalConfig = field(default_factory=InstCalConfig)  #: masks, detection, PSF, WCS, ZP
    refs: RefBuildConfig = field(default_factory=RefBuildConfig)  #: epochs, co-add, catalogues
    diffim: SubtractRunConfig = field(default_factory=SubtractRunConfig)  #: subtraction to alerts
    streaks: StreakConfig = field(default_factory=StreakConfig)  #: streak search if diffim.streaks
    moving: LinkRunConfig = field(default_factory=LinkRunConfig)  #: end-of-night linking
    lightcurves: LightCurveConfig = field(default_factory=LightCurveConfig)  #: light curves

    @classmethod
    def of(cls, config: PipelineConfig | Any | None = None) -> PipelineConfig:
        """The pipeline configuration a runner runs under.

        Parameters
        ----------
        config : PipelineConfig, a stage's configuration, or None
            A pipeline configuration (returned as is); one stage's configuration alone (e.g.
            an :class:`~zsds.instcal.stage.InstCalConfig`: the defaults with that stage's
            replaced, so the hash says what ran); ``None`` (the defaults).

        Returns
        -------
        PipelineConfig

        Raises
        ------
        TypeError
            If ``config`` is none of these.
        """
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        for name, hint in _hints(cls).items():
            if type(config) is hint:
                return replace(cls(), **{name: config})
        raise TypeError(f"not a pipeline or stage configuration: {type(config).__name__}")

    # -- plain values, hash ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The configuration as nested plain values (dicts, lists, numbers, strings, None),
        each of its declared type (an integer given to a float setting is a float)."""
        return _plain(self, PipelineConfig)

    def to_json(self) -> str:
        """Canonical JSON of :meth:`to_dict` (sorted keys, no spaces): the text hashed and
        stored in ``configs``."""
        return canonical_json(self.to_dict())

    def config_hash(self) -> str:
        """First :data:`HASH_LENGTH` hex digits of the SHA-256 of :meth:`to_json` (the
        ``CFGHASH`` of the products; the zsds version is not part of it)."""
        return hash_of_json(self.to_json())

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "configuration") -> PipelineConfig:
        """Configuration from nested plain values (as :meth:`to_dict` or a TOML file gives).

        Keys left out keep their defaults; lists become tuples and integers floats where
        the setting is declared so.

        Parameters
        ----------
        data : dict
        source : str
            Where ``data`` came from, for error messages (a file name).

        Raises
        ------
        ConfigError
            For an unknown key (named, with the closest known one) or a value of the wrong
            type.
        """
        return _build(cls, data, "", source)

    # -- TOML --------------------------------------------------------------------------------
    def to_toml(self) -> str:
        """The whole configuration as a TOML file :meth:`from_toml` reads back equal.

        Settings whose value is ``None`` are written as comments (TOML has no null; left
        out, they keep their default, which is ``None``).

        Raises
        ------
        ConfigError
            If a setting is ``None`` where its default is not (TOML cannot say so).
        """
        default = PipelineConfig().to_dict()
        data = self.to_dict()
        _check_nulls(data, default, "")
        return config_toml(data, [f"zsds pipeline configuration (zsds {__version__})",
                                  f"config hash: {hash_of_json(canonical_json(data))}",
                                  "every key is optional: one left out keeps its default"])

    @classmethod
    def from_toml(cls, path: str | Path) -> PipelineConfig:
        """Read a TOML configuration file (see the module docstring).

        Raises
        ------
        ConfigError
            If the file is not valid TOML, holds an unknown key (named with the file) or a
            value of the wrong type.
        FileNotFoundError
            If there is no such file.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not a valid TOML file: {exc}") from None
        return cls.from_dict(data, str(path))


def load_config(path: str | Path | None) -> PipelineConfig:
    """The configuration of a TOML file, or the defaults when ``path`` is None."""
    return PipelineConfig() if path is None else PipelineConfig.from_toml(path)


def canonical_json(data: dict[str, Any]) -> str:
    """JSON with sorted keys and no spaces (the hashed form of a configuration)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def hash_of_json(text: str) -> str:
    """The configuration hash of a canonical JSON text (:meth:`PipelineConfig.config_hash`)."""
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


# -- database --------------------------------------------------------------------------------
def record_config(engine: Engine, config: PipelineConfig) -> str:
    """Store ``config`` in ``configs`` under its hash, if not there yet (idempotent, safe when
    several workers record the same configuration at once).

    Parameters
    ----------
    engine : Engine
        Database at schema version 12 or later.
    config : PipelineConfig

    Returns
    -------
    str
        The configuration hash (``CFGHASH``).
    """
    text = config.to_json()
    digest = hash_of_json(text)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(ConfigRecord).values(hash=digest, json=text)
            .on_conflict_do_nothing(index_elements=["hash"]))
    with session(engine) as s:
        s.execute(stmt)
    return digest


def stored_config(engine: Engine, config_hash: str) -> dict[str, Any] | None:
    """The configuration stored under ``config_hash`` as plain values, or None if unknown.

    The stored JSON is returned as it was recorded (not rebuilt into a
    :class:`PipelineConfig`), so a configuration recorded by another zsds version is shown
    as it was.
    """
    with session(engine) as s:
        text = s.execute(select(ConfigRecord.json).where(
            ConfigRecord.hash == config_hash.strip().lower())).scalar_one_or_none()
    return None if text is None else json.loads(text)


# -- TOML writing ----------------------------------------------------------------------------
def config_toml(data: dict[str, Any], comments: list[str] | None = None) -> str:
    """Nested plain values (one table per stage) as TOML text.

    Parameters
    ----------
    data : dict
        As :meth:`PipelineConfig.to_dict` or :func:`stored_config` give.
    comments : list of str, optional
        Comment lines at the top.

    Returns
    -------
    str
    """
    lines = [f"# {c}" for c in comments or []]
    _toml_table(data, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_table(data: dict[str, Any], prefix: tuple[str, ...], lines: list[str]) -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix and (scalars or not tables):
        lines += ["", f"[{'.'.join(prefix)}]"]
    for key, value in scalars.items():
        lines.append(f"# {key}: none" if value is None else f"{key} = {_toml_value(value)}")
    for key, value in tables.items():
        _toml_table(value, (*prefix, key), lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def _check_nulls(data: dict[str, Any], default: dict[str, Any], prefix: str) -> None:
    for key, value in data.items():
        base = default.get(key) if isinstance(default, dict) else None
        if isinstance(value, dict):
            _check_nulls(value, base if isinstance(base, dict) else {}, f"{prefix}{key}.")
        elif value is None and base is not None:
            raise ConfigError(f"{prefix}{key} is None where its default is {base!r}: TOML "
                              "cannot say so")


# -- typed conversion ------------------------------------------------------------------------
@cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved field types of a configuration dataclass (only the ``__init__`` fields)."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if f.init}


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _plain(value: Any, hint: Any) -> Any:
    """``value`` as plain JSON values, each of its declared type ``hint``."""
    if value is None:
        return None
    if _is_union(hint):
        options = [a for a in get_args(hint) if a is not type(None)]
        hint = options[0] if len(options) == 1 else Any
    if is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name), h) for name, h in _hints(type(value)).items()}
    origin = get_origin(hint)
    if origin in (tuple, list) and isinstance(value, tuple | list):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        if origin is tuple and len(args) == len(value):
            return [_plain(v, a) for v, a in zip(value, args, strict=True)]
        return [_plain(v, args[0] if args else Any) for v in value]
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, Enum):
        return _plain(value.value, Any)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, tuple | list):
        return [_plain(v, Any) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, Any) for k, v in value.items()}
    return value


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    """An instance of the configuration dataclass ``cls`` from a (partial) dict."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where} must be a table of settings, not "
                          f"{_kind(data)}")
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in hints:
            close = difflib.get_close_matches(key, hints, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            known = ", ".join(hints)
            raise ConfigError(f"{source}: unknown configuration key '{prefix}{key}'{hint}; "
                              f"{where} has: {known}")
        kwargs[key] = _convert(value, hints[key], f"{prefix}{key}", source)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from None


def _convert(value: Any, hint: Any, key: str, source: str) -> Any:
    """``value`` (from TOML or JSON) as the declared type ``hint`` of setting ``key``."""
    if _is_union(hint):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{source}: {key} = {value!r}: expected {_name(hint)}")
    if isinstance(hint, type) and is_dataclass(hint):
        return _build(hint, value, f"{key}.", source)
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            raise ConfigError(f"{source}: {key} = {value!r}: expected one of "
                              f"{', '.join(repr(a) for a in get_args(hint))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} = {value!r}: expected an array "
                              f"({_name(hint)})")
        args = get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{source}: {key} = {value!r}: expected {len(args)} values "
                                  f"({_name(hint)})")
            items = [_convert(v, a, key, source) for v, a in zip(value, args, strict=True)]
        else:
            item = args[0] if args else Any
            items = [_convert(v, item, key, source) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int or (isinstance(hint, type) and issubclass(hint, int)):
        if isinstance(value, int) and not isinstance(value, bool):
            return hint(value) if hint is not int else value
    elif hint is str:
        if isinstance(value, str):
            return value
    elif isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            pass
    else:  # Any, or a type this module does not know: taken as given
        return value
    raise ConfigError(f"{source}: {key} = {value!r}: expected {_name(hint)}, not "
                      f"{_kind(value)}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if isinstance(hint, type) else str(hint)


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", bool: "a boolean", int: "an integer",
            float: "a float", str: "a string"}.get(type(value), type(value).__name__)
