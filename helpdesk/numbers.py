"""Ticket numbers handed out from blocks a process reserves, as a database sequence with a
cache does (PostgreSQL's ``CACHE n``).

A ticket's number is taken by the API before its workflow starts (the Temporal UI's static
summary names it). Taking each number in a write transaction of its own cost every creation
a trip through SQLite's one writer queue. Here a process reserves `size` numbers at a time
(one ``UPDATE counters ... RETURNING``) and hands them out from memory.

What this changes for people: numbers stay unique, and increase within one process; a
process that stops leaves the rest of its block unused (a gap, as a workflow start that
failed after taking its number always left one); two API processes hand out interleaved
blocks, so a higher number may be opened a moment before a lower one. Size 1 takes each
number from the database, as before.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from helpdesk.db import Database

_RESERVE = text(
    "UPDATE counters SET value = value + :n WHERE name = 'ticket_number' RETURNING value"
)


async def reserve(session: AsyncSession, count: int = 1) -> int:
    """Reserve `count` numbers in the caller's transaction (a row lock on PostgreSQL, the
    write lock on SQLite) and return the LAST of them: they are last-count+1 .. last."""
    value = await session.scalar(_RESERVE, {"n": count})
    if value is None:
        raise RuntimeError("the ticket_number counter row is missing (run the migrations)")
    return int(value)


class NumberBlock:
    """The numbers this process reserved and has not handed out yet."""

    def __init__(self, database: Database, size: int) -> None:
        if size < 1:
            raise ValueError("a block holds at least one number")
        self.database = database
        self.size = size
        self._next = 0
        self._end = 0  # exclusive: the block is empty when _next == _end
        # One refill at a time per event loop (a lock belongs to one loop; tests run many).
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    @property
    def left(self) -> int:
        return self._end - self._next

    async def take(self) -> int:
        """The next number: from the block, or from a new block reserved now."""
        if self._next < self._end:  # no await between the check and the take
            number = self._next
            self._next += 1
            return number
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            for old in [lp for lp in self._locks if lp.is_closed()]:
                del self._locks[old]
            lock = self._locks[loop] = asyncio.Lock()
        async with lock:
            if self._next >= self._end:  # another task may have refilled it meanwhile
                async with self.database.transaction() as session:
                    last = await reserve(session, self.size)
                self._next, self._end = last - self.size + 1, last + 1
            number = self._next
            self._next += 1
            return number
