"""The executive carries every stage's configuration (issue 21): each task that has settings
is submitted with :attr:`ExecConfig.pipeline` as ``config``; the others get nothing extra.
(No cluster: a stand-in client records what would be submitted.)"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

from zsds.config import PipelineConfig
from zsds.core.home import Home
from zsds.executive import ExecConfig, Executive, tasks


class _Client:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple, dict]] = []

    def submit(self, fn, *args, **kwargs):
        self.calls.append((fn, args, kwargs))


def test_configured_tasks_get_the_pipeline_config(tmp_path: Path):
    d = PipelineConfig()
    pipeline = dataclasses.replace(d, moving=dataclasses.replace(d.moving, window_nights=5))
    home = Home(tmp_path / "home").ensure()
    ex = Executive(home, engine=None, config=ExecConfig(pipeline=pipeline))
    ex.client = _Client()
    for fn in tasks.CONFIGURED:
        # Every configured task takes the keyword, and passes it on (default: the defaults).
        assert inspect.signature(fn).parameters["config"].default is None, fn.__name__
        ex._submit(fn, "2026-11-20", key=fn.__name__)
    ex._submit(tasks.task_ingest, "x.fits.fz", key="ingest")
    ex._submit(tasks.task_packets, "2026-11-20", 1, key="packets")
    by_fn = {fn: kw for fn, _, kw in ex.client.calls}
    for fn in tasks.CONFIGURED:
        assert by_fn[fn]["config"] is pipeline
    assert "config" not in by_fn[tasks.task_ingest]
    assert "config" not in by_fn[tasks.task_packets]
    assert {tasks.task_calibrations, tasks.task_calibrate, tasks.task_subtract,
            tasks.task_refs, tasks.task_moving} <= tasks.CONFIGURED
    assert ExecConfig().pipeline == PipelineConfig()
