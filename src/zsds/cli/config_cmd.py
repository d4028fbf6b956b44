"""``zsds config show``: the pipeline configuration, and the one a product was made with."""

from __future__ import annotations

import click

from zsds.cli.common import config_option, home_option, open_db, pipeline_config, user_errors
from zsds.core.home import Home


@click.group("config")
def config_group() -> None:
    """Pipeline configuration: every stage's settings, one TOML file (issue 21)."""


@config_group.command("show")
@home_option
@config_option
@click.option("--hash", "config_hash", default=None, metavar="H",
              help="print the configuration stored under this hash (a product's CFGHASH) in "
                   "the home's database")
@user_errors
def config_show(home, db_url, config_file, config_hash) -> None:
    """Print a pipeline configuration as TOML (with its hash).

    Without --hash: the defaults, or the --config file with every setting it leaves out at
    its default (a file that --config reads back equal). With --hash H: the configuration
    that made the products whose header says CFGHASH = H, as the database of --home
    recorded it; exit 1 if it holds none under that hash.
    """
    from zsds.config import canonical_json, config_toml, hash_of_json, stored_config

    if config_hash is None:
        click.echo(pipeline_config(config_file).to_toml(), nl=False)
        return
    if config_file is not None:
        raise click.UsageError("give either --hash or --config, not both")
    h = Home.resolve(home, db_url)
    data = stored_config(open_db(h), config_hash)
    if data is None:
        raise click.ClickException(
            f"no configuration with hash {config_hash.strip()!r} in {h.db_url} (the hash is "
            "a product's CFGHASH header keyword, 16 hex digits; is this the home that made "
            "it?)")
    digest = hash_of_json(canonical_json(data))
    click.echo(config_toml(data, [f"zsds pipeline configuration recorded in {h.db_url}",
                                  f"config hash: {digest}"]), nl=False)
