"""Canary helpers: the files a database keeps on disk, and the check that a canary is in
none of them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from helpdesk.runtime import Runtime


def database_files(runtime: Runtime) -> dict[str, bytes]:
    """The raw bytes of the database file and of its write-ahead log, read now."""
    path = Path(make_url(runtime.settings.database_url).database or "")
    wal = path.with_name(path.name + "-wal")
    assert path.exists()
    assert wal.exists(), "no WAL file: the test would prove less than it claims"
    return {path.name: path.read_bytes(), wal.name: wal.read_bytes()}


def assert_absent(files: dict[str, bytes], *needles: str) -> None:
    for name, data in files.items():
        for needle in needles:
            for form in {needle, needle.lower(), needle.upper()}:
                assert form.encode() not in data, f"{needle!r} found in {name}"
                assert form.encode("utf-16-le") not in data, f"{needle!r} (utf-16) in {name}"
