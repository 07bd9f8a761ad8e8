"""The files the tool reads and writes: bounded reading, and private writing.

Topology files, saved plans and the digests of both are read here and only here. Before a
parser sees a file, four things are settled, each a ``Problem`` naming the file
(and the line where there is one) instead of an exception:

- only regular files are read: ``/dev/zero`` or ``/dev/urandom`` would be read until memory
  runs out, and a FIFO blocks until someone writes to it (``stat`` before ``open``, and the
  open itself is non-blocking, so a FIFO swapped in between cannot hang us either);
- at most ``max_bytes`` are read (``DEFAULT_MAX_FILE_SIZE``, 64 MiB, unless ``--max-file-size``
  raises it): a file that grows while read is cut at the limit plus one byte and refused;
- the text is UTF-8 (a UTF-8 byte order mark is dropped, as JSON and YAML readers do); a UTF-16
  or UTF-32 file is named as such, and an invalid byte is reported with its line;
- ``MAX_INT_DIGITS`` bounds integer literals for both parsers: the broker's largest integer
  (a signed 64-bit AMQP table value) has 19 digits, and Python refuses to convert more than
  4,300 digits with an error that names neither file nor line.
"""

from __future__ import annotations

import codecs
import os
import stat

from ._errors import Location, Problem

DEFAULT_MAX_FILE_SIZE = 64 * 1024 * 1024
MAX_INT_DIGITS = 100  # five times a 64-bit integer's 19 digits; far below Python's 4,300

_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),  # before UTF-16 LE, whose mark is its prefix
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def is_definitions(path: str) -> bool:
    """Files named ``*.json`` are read as RabbitMQ definitions (the rest as YAML)."""
    return path.lower().endswith(".json")


def parse_size(text: str) -> int:
    """``--max-file-size``: bytes, or a number with K, M or G (binary: 64M = 64 MiB).

    Raises ``ValueError`` with a message for argparse."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    raw = text.strip().lower().removesuffix("ib").removesuffix("b")
    factor = units.get(raw[-1:], 1)
    number = raw[:-1] if raw[-1:] in units else raw
    if not number.isdigit() or int(number) * factor <= 0:
        raise ValueError(f"not a size: {text!r} (bytes, or a number with K, M or G, e.g. 128M)")
    return int(number) * factor


def read_bytes(path: str, max_bytes: int = DEFAULT_MAX_FILE_SIZE) -> bytes | Problem:
    """The bytes of ``path``, or the problem that stops it from being read."""
    where = Location(path, 0)
    try:
        info = os.stat(path)
    except OSError as exc:
        return Problem(f"cannot read the file: {exc.strerror or exc}", where)
    if not stat.S_ISREG(info.st_mode):
        return Problem(f"not a regular file ({_kind(info.st_mode)}); nothing was read", where)
    if info.st_size > max_bytes:
        return _too_large(path, max_bytes)
    try:
        # non-blocking: a FIFO put in the file's place since the stat must not hang the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                return Problem("not a regular file; nothing was read", where)
            # what stat saw, then whatever it grew by (up to the limit plus one byte): a
            # read of the limit itself would allocate 64 MiB for a file of a few KB
            data = fh.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += fh.read(max_bytes + 1 - len(data))
    except OSError as exc:
        return Problem(f"cannot read the file: {exc.strerror or exc}", where)
    if len(data) > max_bytes:  # it grew while we read it
        return _too_large(path, max_bytes)
    return data


def read_text(path: str, max_bytes: int = DEFAULT_MAX_FILE_SIZE) -> str | Problem:
    """The UTF-8 text of ``path``, or the problem that stops it from being read."""
    data = read_bytes(path, max_bytes)
    return data if isinstance(data, Problem) else decode(data, path)


def write_private(path: str, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600): saved plans and
    exports may hold password hashes. An existing file is truncated and made 0600 too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(text)


def decode(data: bytes, path: str) -> str | Problem:
    """``data`` as UTF-8 text, or a problem naming the encoding or the bad byte's line."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return Problem(
                f"the file is {name} (it starts with a {name} byte order mark); save it as UTF-8",
                Location(path, 1),
            )
    nul = data.find(b"\x00")
    if nul >= 0:  # valid UTF-8, but no YAML or JSON text holds one: most likely UTF-16
        return Problem(
            f"a NUL byte at offset {nul} (UTF-16 without a byte order mark?); save the file "
            "as UTF-8",
            Location(path, data.count(b"\n", 0, nul) + 1),
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1].hex()
        return Problem(
            f"not valid UTF-8: byte 0x{bad} at offset {exc.start}; save the file as UTF-8",
            Location(path, line),
        )


def _too_large(path: str, max_bytes: int) -> Problem:
    return Problem(
        f"larger than the limit of {max_bytes:,} bytes; nothing was read "
        "(--max-file-size raises the limit)",
        Location(path, 0),
    )


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"
