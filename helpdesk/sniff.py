"""What an uploaded file really is (magic bytes, not the client's word) and a safe name.

`sniff_mime` looks at the first bytes only (`SNIFF_BYTES`): the upload decides before it
stores anything past them. `sanitise_filename` keeps a name fit for a Content-Disposition
header and a download folder: no directories, no control or bidi characters, bounded length.
"""

from __future__ import annotations

import re
import unicodedata

import filetype

# Enough for every signature below and for the first entries of an OOXML zip.
SNIFF_BYTES = 8 * 1024
MAX_FILENAME_BYTES = 200
DEFAULT_FILENAME = "attachment"

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
TEXT = "text/plain"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_ACCEPTED_BINARY = frozenset({PDF, PNG, JPEG, GIF, DOCX, XLSX})
# Native executables, refused by name in the audit row: `filetype` knows PE and ELF; it has
# no Mach-O matcher, so those magics are ours.
_EXECUTABLE_MIMES = frozenset({"application/x-msdownload", "application/x-executable"})
_MACHO_MAGIC = (
    b"\xcf\xfa\xed\xfe",  # Mach-O 64
    b"\xce\xfa\xed\xfe",  # Mach-O 32
    b"\xca\xfe\xba\xbe",  # Mach-O fat / Java class
)
# C0 controls allowed in plain text.
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\x1b")


def sniff_mime(head: bytes) -> str | None:
    """The MIME type the first bytes of a file show, or None when it is none we accept.

    Binary formats by the `filetype` library's signatures (OOXML included: a zip whose
    first entries are [Content_Types].xml and word/ or xl/ parts); plain text by our own
    check, since `filetype` does not do text."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return kind.mime if kind.mime in _ACCEPTED_BINARY else None
    if head.startswith((b"PK\x03\x04", *_MACHO_MAGIC)):
        return None
    if _looks_like_text(head):
        return TEXT
    return None


def is_executable(head: bytes) -> bool:
    """True for the magic bytes of native executables."""
    if head.startswith(_MACHO_MAGIC):
        return True
    kind = filetype.guess(head) if head else None
    return kind is not None and kind.mime in _EXECUTABLE_MIMES


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 (or ASCII) without NULs and with few control characters."""
    if b"\0" in head:
        return False
    sample = head
    if sample.startswith(b"\xef\xbb\xbf"):
        sample = sample[3:]
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is fine; anything else is not.
        if exc.start < len(sample) - 3 or exc.reason != "unexpected end of data":
            return False
    controls = sum(1 for byte in sample if byte < 0x20 and byte not in _TEXT_CONTROLS)
    return controls == 0


_RESERVED = re.compile(r'[<>:"/\\|?*]')
_SPACES = re.compile(r"\s+")
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)


def sanitise_filename(name: str | None) -> str:
    """A safe display/download name derived from what the client sent.

    Drops any directory part (``/`` or ``\\``), control, format (bidi overrides, zero-width)
    and unassigned characters, replaces characters reserved on common file systems, trims
    dots and spaces at the ends, avoids Windows device names, and caps the UTF-8 length while
    keeping a short extension."""
    if not name:
        return DEFAULT_FILENAME
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _RESERVED.sub("_", name)
    name = _SPACES.sub(" ", name).strip(" .")
    if not name:
        return DEFAULT_FILENAME
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    if stem.upper() in _WINDOWS_DEVICES or name.upper() in _WINDOWS_DEVICES:
        name = "_" + name
    if len(name.encode()) > MAX_FILENAME_BYTES:
        keep_ext = "." + ext if ext and len(ext.encode()) <= 16 else ""
        budget = MAX_FILENAME_BYTES - len(keep_ext.encode())
        base = name[: len(name) - len(keep_ext)] if keep_ext else name
        base = base.encode()[:budget].decode("utf-8", errors="ignore").rstrip(" .")
        name = (base or DEFAULT_FILENAME) + keep_ext
    return name


def ascii_fallback(name: str) -> str:
    """An ASCII rendering of a sanitised name for the plain ``filename=`` parameter."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stem, ext = _ascii(stem), _ascii(ext)
    return f"{stem or DEFAULT_FILENAME}.{ext}" if ext else stem or DEFAULT_FILENAME


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    folded = re.sub(r"[^A-Za-z0-9._ ()-]", "_", folded)
    return _SPACES.sub(" ", folded).strip(" .")
