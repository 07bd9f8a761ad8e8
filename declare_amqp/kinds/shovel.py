"""Dynamic shovels (AMQP 0-9-1): move messages from a source to a destination (the
``rabbitmq_shovel`` plugin's runtime parameters; see ``parameters`` for their URIs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._format import Key
from ._base import Reader
from .parameters import _BOOL, _INT, _STR, Component, ParameterSpec, Uris, uri_keys

if TYPE_CHECKING:
    from .._management import ManagementClient


# The shovels ``apply --migrate --mover shovel`` writes (``_movers``), one per queue it moves:
# prune keeps them, as it keeps a migration's holding queue (a killed run's shovel is finishing
# its round; the rerun deletes and writes it again itself).
MIGRATION_SHOVEL_PREFIX = "declare-amqp.migrate "


class ShovelKind(Component):
    """The ``shovels`` list."""

    def kept_by_prune(self, spec: ParameterSpec) -> bool:
        """A migration's shovel (``MIGRATION_SHOVEL_PREFIX``) is the migration's to delete."""
        return spec.name.startswith(MIGRATION_SHOVEL_PREFIX)

    def running(self, management: ManagementClient) -> bool:
        """Shovels are seen through ``GET /api/shovels`` of rabbitmq_shovel_management."""
        return management.shovels_enabled()

    def check(self, reader: Reader, f: Mapping[str, Any], line: int, label: str) -> None:
        """A shovel needs a source and a destination queue or exchange."""
        for side in ("src", "dest"):
            if not any(f"{side}_{k}" in f for k in ("queue", "exchange")):
                reader.problem(line, f"a shovel needs {side}_queue or {side}_exchange", label)

    def broker_value(self, spec: ParameterSpec, uris: Mapping[str, Uris]) -> dict[str, Any]:
        """As every component's, with the protocols (AMQP 0-9-1) spelled out."""
        value = super().broker_value(spec, uris)
        value.setdefault("src-protocol", "amqp091")
        value.setdefault("dest-protocol", "amqp091")
        return value


SHOVEL = ShovelKind(
    "shovels",
    "shovel",
    "shovel",
    "rabbitmq_shovel",
    ("src_uri", "dest_uri"),
    (
        Key("name", _STR, "Shovel name.", required=True),
        Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
        *uri_keys("src_", "source"),
        Key("src_queue", _STR, "Source queue."),
        Key("src_exchange", _STR, "Source exchange."),
        Key("src_exchange_key", _STR, "Routing key to bind the source exchange with."),
        Key("src_delete_after", (str, int), "never, queue-length, or a number of messages."),
        *uri_keys("dest_", "destination"),
        Key("dest_queue", _STR, "Destination queue."),
        Key("dest_exchange", _STR, "Destination exchange."),
        Key("dest_exchange_key", _STR, "Routing key to publish with."),
        Key("dest_add_forward_headers", _BOOL, "Add x-shovelled headers."),
        Key(
            "ack_mode",
            _STR,
            "on-confirm, on-publish or no-ack.",
            choices=("on-confirm", "on-publish", "no-ack"),
        ),
        Key("prefetch_count", _INT, "Unacknowledged messages in flight.", minimum=1),
        Key("reconnect_delay", _INT, "Seconds between reconnects.", minimum=0),
    ),
    doc="Dynamic shovels, AMQP 0-9-1 (URIs by reference).",
    schema_doc="A dynamic shovel (AMQP 0-9-1).",
)
