"""Helpers of the attachment tests: a ticket to attach to, an upload."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from helpdesk.runtime import Runtime
from models.ticket import Ticket
from tests.support.factories import Actor

API = "/api/v1"


async def make_ticket(runtime: Runtime, requester: Actor) -> uuid.UUID:
    """A ticket row as the ticket workflow would leave it (data key, number, requester)."""
    async with runtime.database.transaction() as session:
        key = await runtime.keys.create(session)
        number = int(await session.scalar(select(func.coalesce(func.max(Ticket.number), 0))) or 0)
        ticket = Ticket(
            id=uuid.uuid4(),
            number=number + 1,
            data_key_id=key.key_id,
            requester_id=requester.id,
        )
        session.add(ticket)
    return ticket.id


async def upload(
    http: httpx.AsyncClient,
    actor: Actor,
    ticket_id: uuid.UUID,
    data: bytes,
    filename: str = "file.txt",
    content_type: str = "text/plain",
    **params: Any,
) -> httpx.Response:
    return await http.post(
        f"{API}/tickets/{ticket_id}/attachments",
        files={"file": (filename, data, content_type)},
        params=params,
        headers=actor.headers,
    )
