"""``zsds serve`` (the archive service) and ``zsds users`` (its accounts)."""

from __future__ import annotations

import os
import sys

import click

from zsds.cli.common import console, home_option, open_db, user_errors
from zsds.core.home import Home


@click.command("serve")
@home_option
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", type=int, default=8765, show_default=True)
@click.option("--no-index", is_flag=True, help="do not bring the image index up to date first")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="worker processes (uvicorn workers) sharing the port, home and database")
@user_errors
def serve(home, db_url, host, port, no_index, workers) -> None:
    """Serve the archive of a home: IRSA-compatible APIs, the web UI and the depot.

    Clients written for IRSA (ztfquery, astroquery, pyvo, curl) work with only the base URL
    changed to http://HOST:PORT (see docs/archive.md). The OpenAPI description is at /docs.

    With --workers N, N processes serve the same port (the kernel spreads the connections);
    each builds its own application and database engine. Sessions, tokens, TAP jobs and the
    failed-login counts are in the database, so every worker sees them and the lockout
    stops an attacker after the configured number of guesses whichever worker answers.
    SQLite (WAL journal) and PostgreSQL both serve several processes; for many workers or
    heavy writes prefer PostgreSQL.
    """
    import uvicorn

    h = Home.resolve(home, db_url)
    if not h.root.is_dir():
        raise click.ClickException(f"{h.root}: no such zsds home")
    banner = (f"[bold green]zsds archive[/] {h.root} at http://{host}:{port}/ "
              f"(API description: http://{host}:{port}/docs)")
    if workers == 1:
        from zsds.archive.app import create_app

        app = create_app(h, open_db(h), refresh_index=not no_index)
        console.print(banner)
        uvicorn.run(app, host=host, port=port, log_level="info")
        return

    from zsds.core.home import ENV_DB_URL, ENV_HOME

    # Schema and image index brought up to date once, here, before the workers start: the
    # workers only open the database.
    engine = open_db(h)
    if not no_index:
        from zsds.archive.index import update_index

        update_index(h, engine)
    engine.dispose()
    os.environ[ENV_HOME] = str(h.root)
    os.environ[ENV_DB_URL] = h.db_url
    console.print(f"{banner} with {workers} worker processes")
    uvicorn.run("zsds.archive.app:app_from_env", factory=True, workers=workers, host=host,
                port=port, log_level="info")


@click.group()
def users() -> None:
    """Accounts of the archive (the depot and restricted products need a login)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@users.command("add")
@home_option
@click.argument("username")
@click.option("--admin", is_flag=True, help="an administrator")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
@click.option("--replace", is_flag=True, help="reset the password of an existing user")
@user_errors
def users_add(home, db_url, username, admin, password_stdin, replace) -> None:
    """Create an account (the password is stored as a scrypt hash)."""
    from zsds.archive.auth import create_user

    engine = open_db(Home.resolve(home, db_url))
    uid = create_user(engine, username, _password(password_stdin), admin=admin,
                      replace=replace)
    console.print(f"user {username} (id {uid}){' [admin]' if admin else ''} saved")


@users.command("token")
@home_option
@click.argument("username")
@click.option("--name", default=None, help="a label for the token")
@click.option("--hours", type=float, default=None, help="lifetime (default: no expiry)")
@user_errors
def users_token(home, db_url, username, name, hours) -> None:
    """Print a new API token of a user (send it as 'Authorization: Bearer TOKEN')."""
    from sqlalchemy import select

    from zsds.archive.auth import issue_token
    from zsds.db.engine import session
    from zsds.db.schema import User

    engine = open_db(Home.resolve(home, db_url))
    with session(engine) as s:
        uid = s.scalar(select(User.id).where(User.username == username))
    if uid is None:
        raise click.ClickException(f"no such user: {username}")
    click.echo(issue_token(engine, uid, kind="api", name=name, hours=hours))


@users.command("list")
@home_option
@user_errors
def users_list(home, db_url) -> None:
    """List the accounts."""
    from sqlalchemy import select

    from zsds.db.engine import session
    from zsds.db.schema import User

    engine = open_db(Home.resolve(home, db_url))
    with session(engine) as s:
        for u in s.scalars(select(User).order_by(User.username)):
            flags = " ".join(f for f, on in (("admin", u.is_admin), ("disabled", u.disabled))
                             if on)
            click.echo(f"{u.username}\t{u.created_at:%Y-%m-%d}\t{flags}")
