"""Reliability: what a night's products must look like after a fault, and the fault scenarios.

:mod:`zsds.reliability.checks` counts what a night lost or duplicated (raw files, quadrants,
rows, files, alert packets and Kafka messages) and the jobs left ``running``;
:mod:`zsds.reliability.scenarios` runs each fault of issue 19 against a small simulated
survey (``zsds eval reliability``, ``docs/reliability.md``); ``tests/faults`` runs shorter
versions of the same scenarios.
"""

from zsds.reliability.checks import Integrity, night_integrity

__all__ = ["Integrity", "night_integrity"]
