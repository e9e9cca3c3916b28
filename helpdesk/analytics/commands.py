"""`helpdesk analytics rebuild`: recompute the analytics facts and rollups from the rows."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from helpdesk.settings import Settings


async def rebuild_database(settings: Settings) -> Any:
    """One transaction: every fact and rollup cell replaced by what the rows say."""
    from helpdesk.analytics.rebuild import rebuild
    from helpdesk.runtime import build_runtime
    from helpdesk.services.ticket_tags import analytics_tokens

    runtime = build_runtime(settings)
    try:
        async with runtime.database.transaction() as session:
            return await rebuild(session, analytics_tokens(runtime))
    finally:
        await runtime.close()


def cmd_rebuild(args: argparse.Namespace) -> int:
    from helpdesk.settings import get_settings

    result = asyncio.run(rebuild_database(get_settings()))
    print(f"analytics rebuilt: {result.tickets} tickets, {result.cells} rollup cells")
    return 0


def add_analytics_parser(commands: Any) -> None:
    """`helpdesk analytics rebuild`."""
    analytics = commands.add_parser("analytics", help="reporting and analytics tools")
    actions = analytics.add_subparsers(dest="analytics_command", required=True, metavar="ACTION")
    actions.add_parser(
        "rebuild", help="recompute the analytics facts and rollups from the ticket rows"
    ).set_defaults(func=cmd_rebuild)
