"""``zsds alerts send``: publish a night's archived alert packets on Kafka."""

from __future__ import annotations

import click

from zsds.cli.common import console, home_option, open_db, user_errors
from zsds.core.home import Home


@click.command("send")
@home_option
@click.option("--night", required=True, help="UT date of the night, YYYY-MM-DD")
@click.option("--kafka", default=None, metavar="HOST:PORT",
              help="Kafka bootstrap server (default: only count the archived packets)")
@click.option("--resend", is_flag=True,
              help="send again packets this broker cluster already has")
@click.option("--partitions", type=click.IntRange(min=1), default=4, show_default=True,
              help="partitions of a topic that does not exist yet")
@click.option("--replication", type=click.IntRange(min=1), default=1, show_default=True,
              help="replication factor of a topic that does not exist yet")
@user_errors
def alerts_send(home, db_url, night, kafka, resend, partitions, replication) -> None:
    """Publish the night's archived packets (as archived: nothing is rebuilt) to Kafka.

    Packets are built and archived by `zsds subtract` (or `zsds night`). Deliveries are
    recorded per broker cluster: a new or restarted-empty broker gets every packet, the
    same one again gets none unless --resend.
    """
    from confluent_kafka import KafkaException

    from zsds.alerts.kafka import StreamConfig
    from zsds.alerts.send import send_night

    h = Home.resolve(home, db_url)
    config = StreamConfig(partitions=partitions, replication=replication)
    try:
        s = send_night(h, open_db(h), night, kafka, resend, config)
    except KafkaException as exc:
        raise click.ClickException(f"Kafka at {kafka}: {exc.args[0].str()}") from None
    for topic, n in s.topics.items():
        console.print(f"  {topic}: {n} packets in {h.alerts / topic}")
    if s.missing:
        click.echo(f"warning: {s.missing} passing candidate(s) of {night} have no archived "
                   "packet: run zsds subtract (or zsds night) for their quadrants", err=True)
    click.echo(f"alerts send: {s.packets} archived packets"
               + (f"; {s.sent} sent to {kafka} (cluster {s.cluster_id}), "
                  f"{s.already_sent} already there" if kafka else ""))
    if s.changed:
        click.echo(f"warning: {s.changed} packet(s) were rebuilt after their delivery to this "
                   "cluster and differ from what it has: --resend sends them again", err=True)
    for e in s.errors[:10]:
        click.echo(f"delivery error: {e}", err=True)
    if s.errors or s.unsent:
        raise click.ClickException(f"{s.unsent} packet(s) were not delivered; they stay in "
                                   "the archive: run this command again to deliver them")
