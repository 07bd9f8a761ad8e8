"""The broker address: which nodes to try, with which credentials and TLS options. No I/O.

Several AMQP URLs may be given (``--url`` repeated, or comma-separated) for a cluster;
the first node that answers is used. The management URL of each node is derived from its
AMQP URL unless given. Credentials come from the URL, else ``AMQP_USER`` / ``AMQP_PASS``,
else guest/guest. The password is kept out of every ``repr`` and message:
``BrokerAddress.redact()`` (:mod:`declare_amqp.urls`) is the last line of defence for text
that leaves the process.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._errors import DeclareAmqpError
from .tls import TlsOptions
from .urls import AMQP_SCHEMES, redact, redact_url, split_urls

# Measured on 2 cores with 2,000 queues: 4 channels 9.1 s, 16 about 6 s, 64 about 4.6 s,
# 128 and 256 no better. Channels are cheap on the broker (one process each).
DEFAULT_CHANNELS = 64


@dataclass(frozen=True)
class Node:
    """One broker node: AMQP and management endpoints, without credentials."""

    host: str
    port: int
    tls: bool
    management_url: str

    @property
    def amqp_display(self) -> str:
        """``amqp://host:port`` (``amqps`` with TLS): the node as shown, without credentials."""
        return f"{'amqps' if self.tls else 'amqp'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class BrokerAddress:
    """The nodes to try, in order, and the credentials for all of them."""

    nodes: tuple[Node, ...]
    user: str
    password: str = field(repr=False)
    url_vhost: str | None = None  # the vhost written in the first URL's path, if any
    tls: TlsOptions = field(default_factory=TlsOptions)  # CA, client certificate, mechanism

    def __str__(self) -> str:
        return ", ".join(n.amqp_display for n in self.nodes)

    def redact(self, text: str) -> str:
        """``text`` with the password (plain and URL-quoted) replaced by ``***``."""
        return redact(text, self.password)


def resolve_address(
    urls: Sequence[str] = (),
    management_urls: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    tls_options: TlsOptions | None = None,
) -> BrokerAddress:
    """Build the broker address from options and the environment.

    Precedence: ``urls`` (``--url``), then ``AMQP_URL``, then the original tool's
    ``AMQP_HOST`` (port 5672), then ``amqp://127.0.0.1:5672``. Management URLs:
    ``management_urls``, then ``RABBITMQ_MANAGEMENT_URL``, then derived per node
    (http://host:15672, or https://host:15671 for amqps). TLS: ``tls_options``, else
    ``AMQP_TLS_CA_FILE`` / ``AMQP_TLS_CERT_FILE`` / ``AMQP_TLS_KEY_FILE`` /
    ``AMQP_AUTH_MECHANISM`` (see :mod:`declare_amqp.tls`).
    """
    env = os.environ if env is None else env
    amqp = split_urls(urls) or split_urls(env.get("AMQP_URL", ""))
    if not amqp:
        host = env.get("AMQP_HOST", "127.0.0.1") or "127.0.0.1"
        amqp = [f"amqp://{host}:5672"]
    mgmt = split_urls(management_urls) or split_urls(env.get("RABBITMQ_MANAGEMENT_URL", ""))
    user = password = None
    nodes: list[Node] = []
    url_vhost: str | None = None
    for i, url in enumerate(amqp):
        try:
            parts = urllib.parse.urlsplit(url)
        except ValueError as exc:  # "Invalid IPv6 URL": a bracket left open
            raise DeclareAmqpError(f"broker URL cannot be read: {exc} ({redact_url(url)})") from exc
        if parts.scheme not in AMQP_SCHEMES:
            raise DeclareAmqpError(
                f"broker URL must start with amqp:// or amqps://, not "
                f"'{parts.scheme}://' ({redact_url(url)})"
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise DeclareAmqpError(f"broker URL has a bad port: {exc}") from exc
        tls = parts.scheme == "amqps"
        host = parts.hostname or "127.0.0.1"
        if parts.username and user is None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
        if i == 0 and parts.path not in ("", "/"):
            url_vhost = urllib.parse.unquote(parts.path[1:])
        if i < len(mgmt):
            management = mgmt[i]
        elif mgmt:
            management = mgmt[-1] if len(mgmt) == 1 else mgmt[i % len(mgmt)]
        else:
            management = f"{'https' if tls else 'http'}://{host}:{15671 if tls else 15672}"
        nodes.append(Node(host, port or (5671 if tls else 5672), tls, management.rstrip("/")))
    if user is None:
        user = env.get("AMQP_USER") or "guest"
        password = env.get("AMQP_PASS", "guest") if env.get("AMQP_PASS") is not None else "guest"
    assert password is not None
    return BrokerAddress(
        tuple(nodes),
        user,
        password,
        url_vhost,
        tls_options if tls_options is not None else TlsOptions.resolve(env=env),
    )
