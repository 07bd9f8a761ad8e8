"""Message bodies: decoded by their content encoding and content type before a handler runs.

Pure: no I/O, no pika, no tornado.
"""

from __future__ import annotations

import gzip
import json
import re


class UndecodableError(Exception):
    """The body does not match its content type or encoding."""


_CHARSET = re.compile(r"charset\s*=\s*\"?([\w.-]+)", re.I)


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None) -> object:
    """The body decoded by its content encoding and type; raises UndecodableError."""
    encoding = (content_encoding or "").lower()
    try:
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding not in ("", "identity", "utf-8", "utf8", "binary", "7bit", "8bit"):
            raise UndecodableError(f"unsupported content-encoding {content_encoding!r}")
        mime = (content_type or "").split(";")[0].strip().lower()
        match = _CHARSET.search(content_type or "")
        charset = match.group(1) if match else "utf-8"
        if mime == "application/json" or mime.endswith("+json"):
            return json.loads(body.decode(charset))
        if mime.startswith("text/"):
            return body.decode(charset)
        return body
    except UndecodableError:
        raise
    except (ValueError, LookupError, OSError, EOFError) as exc:
        raise UndecodableError(f"{type(exc).__name__}: {exc}") from exc
