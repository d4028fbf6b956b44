"""The zsds home: one folder that holds everything a deployment reads and writes.

::

    HOME/
      incoming/     where the camera (or the simulator) writes raw CCD files
      raw/          archived raw files, IRSA layout raw/YYYY/MMDD/ffffff/
      products/     sci/, ref/, cal/ in the IRSA layout
      alerts/       nightly Avro alert archives
      quarantine/   rejected inputs with a machine-readable reason next to each
      refcat/       external catalogs the pipeline queries (PS1-like, Gaia-like, orbits)
      truth/        simulator ground truth; no pipeline code reads it
      zsds.sqlite   the embedded metadata database (unless ZSDS_DB_URL points elsewhere)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_HOME = "ZSDS_HOME"
ENV_DB_URL = "ZSDS_DB_URL"
DEFAULT_HOME = "zsds-home"


def _folder(name: str, doc: str) -> property:
    """Read-only attribute of a :class:`Home`: its subfolder ``name`` (a :class:`~pathlib.Path`)."""
    return property(lambda home: home.root / name, doc=doc)


@dataclass(frozen=True)
class Home:
    """Paths of a zsds home.

    Parameters
    ----------
    root : Path
        The home folder.
    db_url : str or None
        SQLAlchemy URL of the metadata database; ``None`` means the embedded SQLite file.
    """

    root: Path
    db_url_override: str | None = None

    @classmethod
    def resolve(cls, home: str | os.PathLike | None = None, db_url: str | None = None) -> Home:
        """Home from an explicit path, else ``$ZSDS_HOME``, else ``./zsds-home``."""
        root = Path(home or os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser().resolve()
        return cls(root, db_url or os.environ.get(ENV_DB_URL) or None)

    incoming = _folder("incoming", "Where the camera (or the simulator) writes raw CCD files.")
    raw = _folder("raw", "Archived raw files, IRSA layout ``raw/YYYY/MMDD/ffffff/``.")
    products = _folder("products", "``sci/``, ``ref/``, ``cal/`` in the IRSA layout.")
    alerts = _folder("alerts", "Nightly Avro alert archives.")
    quarantine = _folder("quarantine", "Rejected inputs, each with a machine-readable reason.")
    refcat = _folder("refcat", "External catalogs the pipeline queries (PS1, Gaia, orbits).")
    truth = _folder("truth", "Simulator ground truth; no pipeline code reads it.")

    @property
    def db_url(self) -> str:
        return self.db_url_override or f"sqlite:///{self.root / 'zsds.sqlite'}"

    def path(self, relpath: os.PathLike | str) -> Path:
        """Absolute path of a product path relative to the home (see :mod:`zsds.core.naming`)."""
        return self.root / Path(relpath)

    def ensure(self) -> Home:
        """Create the folder structure (idempotent)."""
        for p in (
            self.incoming,
            self.raw,
            self.products,
            self.alerts,
            self.quarantine,
            self.refcat,
        ):
            p.mkdir(parents=True, exist_ok=True)
        return self
