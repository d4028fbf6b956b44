"""``zsds import``: real IPAC products and raw CCD files into a home."""

from __future__ import annotations

from pathlib import Path

import click

from zsds.cli.common import fail_if, home_option, open_db, progress_bar, user_errors
from zsds.core.home import Home


@click.command("import")
@home_option
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@user_errors
def import_cmd(home: Path | None, db_url: str | None, paths: tuple[Path, ...]) -> None:
    """Import IPAC products (as IRSA serves them) and raw CCD files into the home.

    PATHS are files or folders (searched recursively, e.g. a ztfquery download tree).
    Recognised by name and content: sciimg, mskimg, psfcat, sexcat, scimrefdiffimg.fits.fz,
    refimg (+ refunc, refcov, refpsfcat, refsexcat) and raw ztf_*_<t>.fits.fz files. Each is
    copied into the IRSA layout of the home and registered like zsds's own products; anything
    else is refused with its reason (a copy goes to HOME/quarantine) and the command exits 1.
    Importing the same file again changes nothing.
    """
    from zsds.ingest.importing import import_paths

    h = Home.resolve(home, db_url)
    engine = open_db(h)
    prog, update = progress_bar("import")
    with prog:
        results = import_paths(h, engine, paths, progress=update)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        click.echo(f"{r.status}: {r.message}" + (f" [{r.reason}]" if r.reason else ""),
                   err=not r.ok)
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to import"
    click.echo(f"import: {summary}")
    nq = counts.get("quarantined", 0)
    fail_if([f"{nq} file(s) refused (copies under {h.quarantine})" if nq else ""], h, "import")
