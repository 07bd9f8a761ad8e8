"""The vhost kind: a topology file's ``vhosts`` (a name, or an object with ``name``).

Its spec is ``_model.VhostSpec``; its settings (metadata, limits) are the access kind
``vhost_settings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._format import VHOST_KEYS, Reader
from .._model import VhostSpec


def read_document(reader: Reader, doc: Mapping[str, Any]) -> Iterable[VhostSpec]:
    """The vhosts of one parsed topology file (problems go to ``reader``)."""
    for raw, line in reader.entries(doc, "vhosts"):
        if isinstance(raw, str):
            yield VhostSpec(raw, reader.at(line))
            continue
        f = reader.fields(raw, VHOST_KEYS, "vhost", line)
        if f is not None:
            yield VhostSpec(f["name"], reader.at(line))
