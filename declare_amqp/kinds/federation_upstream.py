"""Federation upstreams: where a federated exchange or queue gets its messages from (the
``rabbitmq_federation`` plugin's runtime parameters; see ``parameters`` for their URIs)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._errors import Problem
from .._format import Key
from .parameters import _BOOL, _INT, _STR, Component, not_enabled, uri_keys

if TYPE_CHECKING:
    from .._management import ManagementClient
    from .._model import PolicySpec


class FederationUpstreamKind(Component):
    """The ``federation_upstreams`` list."""

    def running(self, management: ManagementClient) -> bool:
        """Federation registers the exchange type ``x-federation-upstream`` (listed in the
        overview), and answers for its links."""
        return management.federation_enabled()


FEDERATION_UPSTREAM = FederationUpstreamKind(
    "federation_upstreams",
    "federation upstream",
    "federation-upstream",
    "rabbitmq_federation",
    ("uri",),
    (
        Key("name", _STR, "Upstream name.", required=True),
        Key("vhost", _STR, "Virtual host; defaults to the file's `vhost`."),
        *uri_keys("", "upstream broker's"),
        Key("exchange", _STR, "Upstream exchange (default: the federated exchange's name)."),
        Key("queue", _STR, "Upstream queue (default: the federated queue's name)."),
        Key("max_hops", _INT, "How many federation links a message may cross.", minimum=1),
        Key("prefetch_count", _INT, "Unacknowledged messages per link.", minimum=1),
        Key("reconnect_delay", _INT, "Seconds between reconnects.", minimum=0),
        Key(
            "ack_mode",
            _STR,
            "on-confirm, on-publish or no-ack.",
            choices=("on-confirm", "on-publish", "no-ack"),
        ),
        Key("trust_user_id", _BOOL, "Keep the user-id of federated messages."),
        Key("expires", _INT, "ms after which an unused upstream queue is deleted.", minimum=1),
        Key("message_ttl", _INT, "TTL of messages in the upstream queue (ms).", minimum=0),
    ),
    doc="Federation upstreams (URIs by reference: uri_env, uri_file).",
    schema_doc="A federation upstream.",
)


# Policy keys that only a plugin knows: the broker refuses a policy holding one while the
# plugin is off ("... are not recognised policy settings"), after the writes before it.
PLUGIN_POLICY_KEYS = {
    "federation-upstream": FEDERATION_UPSTREAM.plugin,
    "federation-upstream-set": FEDERATION_UPSTREAM.plugin,
}


def policy_plugin_problems(
    management: ManagementClient, policies: Iterable[PolicySpec]
) -> list[Problem]:
    """Policies whose keys need a plugin the broker does not run (checked at plan time)."""
    needed = [
        (p, key, PLUGIN_POLICY_KEYS[key])
        for p in policies
        for key in sorted(p.definition)
        if key in PLUGIN_POLICY_KEYS
    ]
    if not needed:
        return []
    if FEDERATION_UPSTREAM.running(management):
        return []
    return [
        Problem(
            not_enabled(plugin, f"the broker refuses the policy key '{key}'"), p.location, p.label
        )
        for p, key, plugin in needed
    ]
