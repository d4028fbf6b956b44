"""ZTF alert packets: the Avro schema, packet building, the nightly archive and Kafka transport.

Modules:

* :mod:`zsds.alerts.schema` -- locate and parse the real ZTF ``ztf.alert`` schema (v4.02);
* :mod:`zsds.alerts.packet` -- cutouts, schema-conformant records with ZTF's conventions,
  deterministic Avro OCF write/read;
* :mod:`zsds.alerts.fphist` -- ``fp_hists`` records from zsds's forced photometry;
* :mod:`zsds.alerts.send` -- a night's packets built once and archived; publishing the
  archived bytes with deliveries recorded per broker cluster;
* :mod:`zsds.alerts.archive` -- ``<root>/<topic>/<candid>.avro`` and nightly tarballs;
* :mod:`zsds.alerts.kafka` -- topic names and settings, idempotent producer, group consumer,
  admin;
* :mod:`zsds.alerts.broker` -- a local Tansu broker for tests and demos;
* :mod:`zsds.alerts.tail` -- one human line per alert;
* :mod:`zsds.alerts.evaluate` -- field-by-field realism against real ZTF alerts.

The product is described in ``docs/products/alerts.md``.
"""

from zsds.alerts.packet import (
    build_alert,
    cutout_file_name,
    decode_alert_packet,
    fill_record,
    make_cutout,
    read_alert_file,
    read_cutout,
    serialize_alert,
)
from zsds.alerts.schema import load_alert_schema, record_fields, schema_dir, schema_version

__all__ = [
    "build_alert",
    "cutout_file_name",
    "decode_alert_packet",
    "fill_record",
    "load_alert_schema",
    "make_cutout",
    "read_alert_file",
    "read_cutout",
    "record_fields",
    "schema_dir",
    "schema_version",
    "serialize_alert",
]
