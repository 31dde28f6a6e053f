"""Replaying stored workflow histories against the current workflow code: loading a history,
the patch markers it recorded, and one replay through the worker's payload codec."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, WorkflowReplayResult

from settlepay import codec
from settlepay.config import Settings
from workers.main import workflow_runner


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def markers(path: Path) -> set[str]:
    """The patch ids the history recorded (`workflow.patched` markers)."""
    found = set()
    for event in load(path).events:
        marker = event.marker_recorded_event_attributes
        if event.HasField("marker_recorded_event_attributes") and "patch-data" in marker.details:
            found.add(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


async def replay(workflow: type, path: Path, *,
                 raise_on_replay_failure: bool = True) -> WorkflowReplayResult:
    """Replay the history stored at `path` with `workflow`, the settings' data converter and
    the workers' sandbox."""
    return await Replayer(workflows=[workflow], data_converter=codec.data_converter(Settings()),
                          workflow_runner=workflow_runner()).replay_workflow(
        load(path), raise_on_replay_failure=raise_on_replay_failure)
