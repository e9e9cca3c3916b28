"""Command authentication: the worker obeys only commands the API issued.

Anyone who reaches the Temporal frontend can send a workflow an update, a signal or a start
(the `temporal` CLI does it in one line). The payload codec refuses plaintext payloads, but a
client holding the codec (or the codec endpoint) could still encode a command naming any actor.
So every command the help desk sends carries a MAC, in a Temporal header, under
`HELPDESK_COMMAND_KEY`: a secret only the API and the worker hold (never the codec endpoint,
never the Temporal UI). The MAC covers

    workflow id · command name · actor id · actor role · request id · issue time · body digest

(the body digest is SHA-256 of the command's canonical JSON, so a captured header cannot be
re-used with another body; the request id makes a replayed one a no-op: the workflow
deduplicates it). The client interceptor `CommandSigner` signs every start, update and signal
that goes through `helpdesk.temporal.connect` (API, worker, reconciler, CLI commands alike);
`workers.command_guard` checks it in the worker: in the update's validator (a refused update
never enters history), on signals and on the start of the workflows the API starts.

Refusals are counted (`helpdesk_commands_refused_total`) and handed to a sink the worker
installs, which writes a `security.command_refused` audit row (ids and a reason code only:
never a payload). This module is imported by workflow code (passed through the sandbox): it
does no I/O itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python
from temporalio import client as temporal_client
from temporalio.api.common.v1 import Payload

from helpdesk.metrics import COMMANDS_REFUSED

log = logging.getLogger("helpdesk.security")

HEADER = "helpdesk-command-auth"
VERSION = 1
# A command older than this (or this far in the future: clock skew) is refused: a captured
# header is worth little for long.
MAX_AGE_SECONDS = 300
MAX_SKEW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class Claims:
    """What a MAC binds, besides the key."""

    workflow_id: str
    command: str
    actor_id: str
    role: str
    request_id: str
    issued_at_ms: int
    body_digest: str

    def message(self) -> bytes:
        return "\n".join(
            [
                f"v{VERSION}",
                self.workflow_id,
                self.command,
                self.actor_id,
                self.role,
                self.request_id,
                str(self.issued_at_ms),
                self.body_digest,
            ]
        ).encode()


def body_digest(args: Sequence[Any]) -> str:
    """SHA-256 of the command's arguments as canonical JSON (the same on both sides: the
    worker sees them after the pydantic converter decoded them)."""
    canonical = json.dumps(
        to_jsonable_python(list(args)), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def claims_of(workflow_id: str, command: str, args: Sequence[Any], issued_at_ms: int) -> Claims:
    """The claims of a command from its first argument (a request naming an actor and a
    request id, as every ticket command does; a start input names neither)."""
    first = args[0] if args else None
    actor = getattr(first, "actor", None)
    if callable(actor):  # CommentAdded.actor()
        actor = actor()
    actor_id = getattr(actor, "id", None)
    return Claims(
        workflow_id=workflow_id,
        command=command,
        actor_id="" if actor_id is None else str(actor_id),
        role=str(getattr(actor, "role", "") or ""),
        request_id=str(getattr(first, "request_id", "") or ""),
        issued_at_ms=issued_at_ms,
        body_digest=body_digest(args),
    )


def mac(key: bytes, claims: Claims) -> str:
    return hmac.new(key, claims.message(), hashlib.sha256).hexdigest()


def header(key: bytes, workflow_id: str, command: str, args: Sequence[Any]) -> Payload:
    """The signed header of one command, issued now."""
    issued = int(time.time() * 1000)
    claims = claims_of(workflow_id, command, args, issued)
    data = json.dumps({"v": VERSION, "iat": issued, "mac": mac(key, claims)})
    return Payload(metadata={"encoding": b"json/plain"}, data=data.encode())


def verify(
    key: bytes,
    headers: Mapping[str, Payload],
    workflow_id: str,
    command: str,
    args: Sequence[Any],
    now_ms: int,
) -> str | None:
    """None when the command carries a valid, fresh MAC; else the refusal's reason code."""
    payload = headers.get(HEADER)
    if payload is None:
        return "unsigned"
    try:
        parsed = json.loads(payload.data)
        issued = int(parsed["iat"])
        given = str(parsed["mac"])
        if parsed.get("v") != VERSION:
            return "bad_version"
    except (ValueError, KeyError, TypeError):
        return "malformed"
    expected = mac(key, claims_of(workflow_id, command, args, issued))
    if not hmac.compare_digest(expected, given):
        return "bad_mac"
    if now_ms - issued > MAX_AGE_SECONDS * 1000:
        return "stale"
    if issued - now_ms > MAX_SKEW_SECONDS * 1000:
        return "future"
    return None


# --- signing, in every client that `helpdesk.temporal.connect` builds --------------------


class CommandSigner(temporal_client.Interceptor):
    """Client interceptor: signs every workflow start, update and signal."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def intercept_client(
        self, next: temporal_client.OutboundInterceptor
    ) -> temporal_client.OutboundInterceptor:
        return _Signing(next, self._key)


class _Signing(temporal_client.OutboundInterceptor):
    def __init__(self, next: temporal_client.OutboundInterceptor, key: bytes) -> None:
        super().__init__(next)
        self._key = key

    def _signed(
        self, headers: Mapping[str, Payload], workflow_id: str, command: str, args: Sequence[Any]
    ) -> dict[str, Payload]:
        return {**headers, HEADER: header(self._key, workflow_id, command, args)}

    async def start_workflow(
        self, input: temporal_client.StartWorkflowInput
    ) -> temporal_client.WorkflowHandle[Any, Any]:
        input.headers = self._signed(input.headers, input.id, input.workflow, input.args)
        return await super().start_workflow(input)

    async def start_workflow_update(
        self, input: temporal_client.StartWorkflowUpdateInput
    ) -> temporal_client.WorkflowUpdateHandle[Any]:
        input.headers = self._signed(input.headers, input.id, input.update, input.args)
        return await super().start_workflow_update(input)

    async def start_update_with_start_workflow(
        self, input: temporal_client.StartWorkflowUpdateWithStartInput
    ) -> temporal_client.WorkflowUpdateHandle[Any]:
        start, update = input.start_workflow_input, input.update_workflow_input
        start.headers = self._signed(start.headers, start.id, start.workflow, start.args)
        update.headers = self._signed(update.headers, start.id, update.update, update.args)
        return await super().start_update_with_start_workflow(input)

    async def signal_workflow(self, input: temporal_client.SignalWorkflowInput) -> None:
        input.headers = self._signed(input.headers, input.id, input.signal, input.args)
        await super().signal_workflow(input)


# --- refusals: counted, logged, audited by the sink the worker installs -------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused command: ids and codes only (never a payload, never PHI)."""

    kind: str  # update | signal | start | payload
    reason: str  # unsigned | bad_mac | stale | plaintext | ...
    workflow_id: str
    command: str
    actor_id: str  # as the command claimed it (unauthenticated)
    role: str


Sink = Callable[[Refusal], Coroutine[Any, Any, None]]
_sink: tuple[asyncio.AbstractEventLoop, Sink] | None = None


def install_sink(sink: Sink | None) -> None:
    """Where refusals go to be audited (the worker's event loop writes the row). Refusals
    are noticed inside workflow code (another thread) or the codec; they are handed over
    thread-safely. One sink per process: the last worker built installs it."""
    global _sink
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # built outside a loop: refusals are counted and logged only
        loop = None
    _sink = (loop, sink) if sink is not None and loop is not None else None


def refused(refusal: Refusal) -> None:
    """Count, log and hand over one refusal. Never raises."""
    COMMANDS_REFUSED.labels(kind=refusal.kind, reason=refusal.reason).inc()
    log.warning(
        "command refused: %s %s on %s (%s)",
        refusal.kind,
        refusal.command,
        refusal.workflow_id,
        refusal.reason,
    )
    target = _sink
    if target is None:
        return
    loop, sink = target
    if loop.is_closed():
        return

    def schedule() -> None:
        task: asyncio.Task[None] = loop.create_task(sink(refusal))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    try:
        loop.call_soon_threadsafe(schedule)
    except RuntimeError:  # the loop closed meanwhile
        return


_pending: set[asyncio.Task[None]] = set()
