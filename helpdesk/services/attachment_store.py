"""The attachment store and the virus scanner of this process, built once from the
settings and released at shutdown."""

from __future__ import annotations

from helpdesk.runtime import Runtime
from helpdesk.scanner import ClamdClient
from helpdesk.storage.configured import build_store
from helpdesk.storage.store import AttachmentStore


def get_store(runtime: Runtime) -> AttachmentStore:
    """The attachment store of this process, built once from the settings."""
    if runtime.attachment_store is None:
        runtime.attachment_store = build_store(runtime.settings)
    return runtime.attachment_store


def get_scanner(runtime: Runtime) -> ClamdClient:
    if runtime.scanner is None:
        runtime.scanner = ClamdClient(
            runtime.settings.clamd_address, timeout=runtime.settings.clamd_timeout_seconds
        )
    return runtime.scanner


async def close(runtime: Runtime) -> None:
    """Release the store's connections (call at shutdown)."""
    store, runtime.attachment_store = runtime.attachment_store, None
    if store is not None:
        await store.close()
