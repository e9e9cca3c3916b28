"""Recorded histories and the replayer that replays them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from temporalio.worker import Replayer

from helpdesk.temporal import data_converter
from workers.worker import workflow_runner
from workflows.registry import WORKFLOWS

HISTORIES = Path(__file__).resolve().parents[1] / "replay" / "histories"
# The codec key the recorded histories were sealed with (replay must decode them).
FIXED_CODEC_KEY = base64.b64encode(bytes(range(32))).decode()
FIXED = {"payload_codec_key": FIXED_CODEC_KEY, "ticket_continue_as_new_after_events": 400}


def replayer(settings: Any) -> Replayer:
    return Replayer(
        workflows=list(WORKFLOWS),
        data_converter=data_converter(settings),
        workflow_runner=workflow_runner(),
    )
