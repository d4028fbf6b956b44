"""``zsds alerts send``: archive a night's alert packets and publish them on Kafka."""

from __future__ import annotations

import click

from zsds.cli.common import console, home_option, open_db, progress_bar, user_errors
from zsds.core.home import Home


@click.command("send")
@home_option
@click.option("--night", required=True, help="UT date of the night, YYYY-MM-DD")
@click.option("--kafka", default=None, metavar="HOST:PORT",
              help="Kafka bootstrap server (default: archive on disk only)")
@click.option("--resend", is_flag=True, help="send again packets the broker already has")
@user_errors
def alerts_send(home, db_url, night, kafka, resend) -> None:
    """Make the night's packets (real ZTF Avro schema), archive them, send them to Kafka."""
    from zsds.alerts.send import send_night

    h = Home.resolve(home, db_url)
    prog, update = progress_bar("alerts")
    with prog:
        s = send_night(h, open_db(h), night, kafka, resend, progress=update)
    for topic, n in s.topics.items():
        console.print(f"  {topic}: {n} packets -> {h.alerts / topic}")
    rate = s.packets / s.seconds_build if s.seconds_build > 0 else 0.0
    click.echo(f"alerts send: {s.packets} packets built and archived ({rate:.0f}/s)"
               + (f"; {s.sent} sent to {kafka}, {s.already_sent} already there"
                  if kafka else ""))
    for e in s.errors[:10]:
        click.echo(f"delivery error: {e}", err=True)
    if s.errors:
        raise click.ClickException(f"{len(s.errors)} packets were not delivered")
