"""Process logging: one JSON object per line in production, readable text in development.

A JSON line carries `time` (UTC, ISO 8601), `level`, `logger`, `event` (the message),
`request_id` (the HTTP request's `X-Request-ID`, or the activity's), and `ticket_id` or
`workflow_id` when the code logging names one (`extra={"ticket_id": ...}`) or an activity is
running for a ticket workflow. An exception adds `error` = its type only: exception messages
and tracebacks can carry PHI (a driver echoing a parameter), so production keeps them out of
the log; development shows them in full.

Logs never carry PHI by design (we log ids, counts, and error types), and the lifecycle test
in tests/api/test_logs.py greps a full ticket's logs for canaries.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from helpdesk.context import current_context

# Attributes every LogRecord has; anything else passed through `extra=` is a field.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Fields taken from `extra=`: a closed set, so a careless extra cannot add free text.
_EXTRA_FIELDS = ("ticket_id", "workflow_id", "attachment_id", "activity", "outcome", "count")


def _activity_fields() -> dict[str, str]:
    try:
        # Lazy: temporalio (~0.4 s) is loaded already wherever activities run; CLI commands
        # that log (`helpdesk dev` before its prerequisite checks) need not import it.
        from temporalio import activity

        info = activity.info()
    except Exception:  # not inside an activity
        return {}
    return {"workflow_id": info.workflow_id or "", "activity": info.activity_type}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the request context and no exception text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            "request_id": current_context().request_id,
        }
        entry.update(_activity_fields())
        for name in _EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = str(value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    """Install the process's root handler: `json` (one object per line) or `text`."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Alembic announces every plugin it loads at INFO: noise on each start.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # uvicorn's loggers hand their records to the root handler (helpdesk.devserver passes
    # `log_config=None` in JSON mode; its access log already drops query strings).
    if fmt == "json":
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
