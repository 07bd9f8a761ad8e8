"""The management HTTP API client: the one place that reads the broker over HTTP.

- Reading: one ``GET`` per kind of object and vhost (exchanges, queues, bindings,
  policies), sent at once, converted into the same model the files load into.
- Writing: vhosts and policies, which AMQP cannot make (``_access`` and ``_dynamic`` write
  theirs through ``request``). Exchanges, queues and bindings are written over AMQP by
  ``_amqp`` (imported only when something is applied, so ``plan`` does not pay for pika).

Network failures (the standard library's, which ``_http`` raises) and HTTP error statuses
are translated here, and only here, into ``_errors`` types (``_http_error``, ``request``,
``checked``). ``ManagementClient`` takes an ``_http.Transport``, so tests can answer for the
broker (``tests/fake_http.py``).
"""

from __future__ import annotations

import base64
import concurrent.futures
import html
import json
import re
import socket
import ssl
import struct
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _http
from ._address import BrokerAddress, Node
from ._errors import (
    AuthenticationFailed,
    BrokerError,
    BrokerUnreachable,
    ManagementUnavailable,
)
from ._gc import paused as paused_gc
from .tls import tls_failure

if TYPE_CHECKING:
    from ._model import BindingSpec, PolicySpec, Topology
    from ._plan import QueueStats

# The model, the planning types and the broker-JSON reader are imported where they are used:
# a plan's read starts (``_cli.early_read``) before they are loaded, and they load meanwhile.


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


_QUEUE_COLUMNS = "name,type,durable,auto_delete,arguments"
# What plan reads of a vhost: one request per kind, sent together, with only the fields the
# model needs and without the statistics (``disable_stats``), which are most of the cost of
# listing queues. With 20,000 queues, 4,000 exchanges and 20,000 bindings on RabbitMQ 3.10,
# ``GET /api/definitions/{vhost}`` took 4-7 s, these 0.6 s, 0.1 s and 1.2 s, answered in
# parallel. A user with the management or policymaker tag may read them (the definitions
# endpoint needs the administrator tag).
_KINDS: tuple[tuple[str, str], ...] = (
    ("exchanges", "disable_stats=true&columns=name,type,durable,auto_delete,internal,arguments"),
    ("queues", f"disable_stats=true&columns={_QUEUE_COLUMNS}"),
    ("bindings", "columns=source,destination,destination_type,routing_key,arguments"),
    ("policies", ""),
)


def _count(listed: Mapping[str, Any], key: str) -> int:
    """A queue's message or consumer count from a listing (absent or null: 0)."""
    return int(listed.get(key) or 0)


def _queue_stats(
    vhost: str, listed: Sequence[Mapping[str, Any]]
) -> dict[tuple[str, str], QueueStats]:
    """Each listed queue's message and consumer counts, by (vhost, name)."""
    from ._plan import QueueStats

    return {
        (vhost, q["name"]): QueueStats(_count(q, "messages"), _count(q, "consumers"))
        for q in listed
    }


@dataclass(frozen=True)
class BrokerState:
    """What the broker holds in the vhosts asked for."""

    topology: Topology
    stats: Mapping[tuple[str, str], QueueStats]
    version: str
    exchange_types: tuple[str, ...] = ()
    # vhost -> its default_queue_type where that is quorum or stream (3.13+/4.x)
    default_queue_types: Mapping[str, str] = field(default_factory=dict)


def readable_reason(text: str) -> str:
    """A broker's error text for people: HTML entities decoded, Erlang binaries shown as
    strings, blank lines folded.

    ``Validation failed\n\n[{&lt;&lt;"ha-mode"&gt;&gt;,&lt;&lt;"all"&gt;&gt;}] are not ...``
    becomes ``Validation failed: [{"ha-mode","all"}] are not ...``.
    """
    text = html.unescape(text)
    text = re.sub(r'<<("(?:[^"\\]|\\.)*")>>', r"\1", text)
    parts = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return ": ".join(" ".join(p.split()) for p in parts)


# AMQP 0-9-1 field-table value types as RabbitMQ encodes them: fixed sizes, and the types
# carrying a 32-bit length before their bytes
_FIXED_SIZES = {
    b"t": 1, b"b": 1, b"B": 1, b"s": 2, b"u": 2, b"I": 4, b"i": 4,
    b"l": 8, b"L": 8, b"f": 4, b"d": 8, b"D": 5, b"T": 8, b"V": 0,
}  # fmt: skip
_SIZED = (b"S", b"A", b"F", b"x")


class _UnknownFieldType(Exception):
    """A field type the scan below cannot step over: pika's codec decides."""


def _table_field(data: bytes, at: int, wanted: bytes) -> object:
    """One top-level field of the AMQP field table at ``data[at:]``, or None.

    The broker-identity check needs only ``cluster_name`` from ``connection.start``;
    stepping over the table here spares importing pika's package (its connection and
    adapter modules, asyncio included) in every plan. A truncated table is no match.
    """
    (length,) = struct.unpack_from(">I", data, at)
    at += 4
    end = at + length
    if end > len(data):
        return None
    while at < end:
        size = data[at]
        key = data[at + 1 : at + 1 + size]
        at += 1 + size
        kind = data[at : at + 1]
        at += 1
        if kind in _SIZED:
            (n,) = struct.unpack_from(">I", data, at)
            if kind == b"S" and key == wanted:
                return data[at + 4 : at + 4 + n]
            at += 4 + n
        elif kind in _FIXED_SIZES:
            at += _FIXED_SIZES[kind]
        else:
            raise _UnknownFieldType
    return None


def _same_cluster(
    node: Node, cluster_name: object, timeout: float = 3.0, context: ssl.SSLContext | None = None
) -> bool:
    """Whether the AMQP listener of ``node`` belongs to the cluster called ``cluster_name``.

    Behind a port mapping (a container, a load balancer) the management API lists the
    listener's own port, not the one the client dials, so ports alone cannot tell. The
    broker's ``connection.start`` names its cluster: read it with a bare protocol header,
    without logging in, and compare.
    """
    if not isinstance(cluster_name, str) or not cluster_name:
        return False
    try:
        with socket.create_connection((node.host, node.port), timeout=timeout) as raw:
            sock: socket.socket = raw
            if node.tls:
                sock = (context or ssl.create_default_context()).wrap_socket(
                    raw, server_hostname=node.host
                )
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            data = b""
            while len(data) < 7 or len(data) < 8 + struct.unpack(">I", data[3:7])[0]:
                chunk = sock.recv(65536)
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    # frame header (7 bytes), class 10 method 10 (4), version major/minor (2)
    try:
        name = _table_field(data, 7 + 6, b"cluster_name")
    except (struct.error, IndexError):  # a truncated frame
        return False
    except _UnknownFieldType:
        from pika import data as amqp_data  # pika's whole package: 0.1-0.2 s of a start

        try:
            properties, _ = amqp_data.decode_table(data[7:], 6)
        except Exception:
            return False
        name = properties.get("cluster_name")
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return bool(name == cluster_name)


def _http_error(
    exc: BaseException, where: str, method: str | None, path: str = ""
) -> BrokerError | None:
    """The one map from the network's exceptions (``_http.FAILURES``) to ours.

    ``method`` None: while finding a node that answers — None means "this one did not, try
    the next" (a failed TLS check is an error at once). Otherwise the request failed on a
    node that answered before: the broker went away under us.
    """
    failed = tls_failure(exc, where)
    if failed is not None:
        return failed
    if method is None:
        return None
    if isinstance(exc, TimeoutError):
        return BrokerUnreachable(
            f"management API request {method} {path} timed out ({type(exc).__name__})"
        )
    return BrokerUnreachable(f"management API request {method} {path} failed: {exc}")


def _redacted(error: BrokerError, address: BrokerAddress) -> BrokerError:
    """``error`` with the password taken out of its message (a network error may quote a
    URL that carries it)."""
    text = address.redact(str(error))
    return error if text == str(error) else type(error)(text)


class Prefetch:
    """A read of the broker running in the background (``ManagementClient.read`` in a thread
    of its own) while the files are parsed, or even before the modules that parse them are
    imported (``_cli.early_read``). ``future`` holds the state read, or what the read
    raised; ``key`` is what it reads, for a ``Session`` to tell whether it is the read it
    needs."""

    def __init__(self, management: ManagementClient, vhosts: Sequence[str], with_stats: bool):
        self.management = management
        self.key = (tuple(vhosts), with_stats)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self.future = pool.submit(management.read, list(vhosts), with_stats)
        pool.shutdown(wait=False)


class ManagementClient:
    """The management HTTP API of the first node that answers."""

    def __init__(
        self,
        address: BrokerAddress,
        timeout: float = 30.0,
        transport: _http.Transport | None = None,
    ) -> None:
        """``transport`` replaces the network (tests: ``tests/fake_http.py``)."""
        self.address = address
        self.version = "?"
        self.exchange_types: list[str] = []
        self._timeout = timeout
        self._transport = transport
        self._context: ssl.SSLContext | None = None
        credentials = f"{address.user}:{address.password}".encode()
        self._headers = {
            "authorization": "Basic " + base64.b64encode(credentials).decode("ascii"),
            "content-type": "application/json",
        }
        self.node: Node | None = None

    def close(self) -> None:
        """Close the kept-alive connections (the client reconnects on its next request)."""
        if self._transport is not None:
            self._transport.close()

    def __enter__(self) -> ManagementClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tls_context(self) -> ssl.SSLContext | None:
        """The verifying TLS context, made once, when a node is reached over TLS (AMQP or
        HTTP): without TLS anywhere the CA bundle is never loaded (0.1-0.2 s)."""
        if self._context is None and any(
            n.tls or n.management_url.startswith("https:") for n in self.address.nodes
        ):
            self._context = self.address.tls.context()
        return self._context

    def _network(self) -> _http.Transport:
        """The transport, made on first use."""
        if self._transport is None:
            self._transport = _http.HttpTransport(self._timeout, self._tls_context())
        return self._transport

    def _send(
        self,
        node: Node,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> _http.Response:
        """``method path`` on ``node``, ``body`` sent as JSON; raises what the network
        raised (``_http.FAILURES``)."""
        return self._network().send(
            _http.Request(
                method,
                node.management_url.rstrip("/") + path,
                None if body is None else json.dumps(body).encode(),
                {**self._headers, **headers} if headers else self._headers,
            )
        )

    def _connect(self) -> Node:
        """The node whose management API answers for the broker addressed (asked once)."""
        if self.node is not None:
            return self.node
        errors: list[str] = []
        mismatched: list[str] = []
        timed_out: list[str] = []
        self._network()
        context = self._tls_context()
        for node in self.address.nodes:
            try:
                response = self._send(node, "GET", "/api/overview")
            except _http.FAILURES as exc:
                failed = _http_error(exc, node.management_url, None)
                if failed is not None:
                    raise failed from exc
                if isinstance(exc, TimeoutError):
                    timed_out.append(node.management_url)
                errors.append(f"{node.management_url}: {type(exc).__name__}: {exc}")
                continue
            if response.status_code == 401:
                raise AuthenticationFailed(
                    f"the management API at {node.management_url} refused user "
                    f"'{self.address.user}' (wrong user or password, or the user lacks the "
                    "management tag)"
                )
            if response.status_code != 200:
                errors.append(f"{node.management_url}: HTTP {response.status_code}")
                continue
            overview = response.json()
            amqp_ports = {
                int(li.get("port", 0))
                for li in overview.get("listeners") or []
                if li.get("protocol") in ("amqp", "amqp/ssl")
            }
            cluster = overview.get("cluster_name")
            if (
                amqp_ports
                and node.port not in amqp_ports
                and not _same_cluster(node, cluster, context=context)
            ):
                # Same host, different broker (e.g. a second node on other ports): planning
                # against it would compare the files with the wrong broker.
                mismatched.append(
                    f"the management API at {node.management_url} belongs to a broker whose "
                    f"AMQP listeners are on port(s) {', '.join(map(str, sorted(amqp_ports)))}, "
                    f"not {node.port} ({node.amqp_display})"
                )
                continue
            if (
                not amqp_ports
                and isinstance(cluster, str)
                and cluster  # every broker names its cluster; without a name, nothing to check
                and not _same_cluster(node, cluster, context=context)
            ):
                # A non-administrator sees no listeners: the broker's greeting on the AMQP
                # port must name the management API's cluster instead.
                mismatched.append(
                    f"the management API at {node.management_url} belongs to cluster "
                    f"'{cluster}', but no broker of that cluster answers on {node.amqp_display}"
                )
                continue
            self.node = node
            self.version = str(overview.get("rabbitmq_version", "?"))
            self.exchange_types = [t.get("name", "") for t in overview.get("exchange_types") or []]
            return node
        if mismatched:
            raise BrokerError(
                "; ".join(mismatched) + ". Pass the matching --management-url "
                "(one per --url for a cluster); nothing was read or changed"
            )
        if timed_out and len(timed_out) == len(errors):
            # it is there but slow (a loaded broker): not a plugin to enable
            raise BrokerUnreachable(
                f"the management API timed out after {self._timeout:g} s at "
                f"{', '.join(timed_out)}; nothing was read or changed (the broker may be "
                "overloaded: try again)"
            )
        raise ManagementUnavailable(
            "the RabbitMQ management API does not answer ("
            + "; ".join(self.address.redact(e) for e in errors)
            + "). Enable it with `rabbitmq-plugins enable rabbitmq_management`, pass "
            "--management-url, or use --amqp-only (declares over AMQP only: no policies, "
            "no vhosts, no check of arguments RabbitMQ does not compare, no prune)."
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        refused_ok: bool = False,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        node: Node | None = None,
    ) -> _http.Response:
        """One API request (``json``: its body); a 401 raises AuthenticationFailed unless
        ``refused_ok`` (the management API answers 401 also to a user that lacks a tag or a
        vhost permission). ``node``: one that answered ``/api/overview`` or is about to (the
        speculative reads of ``read``); by default the node ``_connect`` chose."""
        if node is None:
            node = self._connect()
        try:
            response = self._send(node, method, path, json, headers)
        except _http.FAILURES as exc:
            failed = _http_error(exc, node.management_url, method, path)
            assert failed is not None
            raise _redacted(failed, self.address) from exc
        if response.status_code == 401 and not refused_ok:
            raise AuthenticationFailed(f"the management API refused user '{self.address.user}'")
        return response

    def checked(self, response: _http.Response, what: str) -> _http.Response:
        """``response`` if it succeeded; else the error its status means, naming ``what``."""
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            # the broker's errors are {"error": ..., "reason": ...}; anything else is shown as sent
            reason = body.get("reason", response.text) if isinstance(body, dict) else response.text
            raise BrokerError(
                self.address.redact(
                    f"{what}: HTTP {response.status_code}: {readable_reason(str(reason))}"
                )
            )
        return response

    def vhosts(self) -> list[str]:
        """The names of every vhost."""
        response = self.checked(self.request("GET", "/api/vhosts?columns=name"), "listing vhosts")
        return [v["name"] for v in response.json()]

    def definitions(self, vhost: str, with_stats: bool = False) -> dict[str, Any] | None:
        """The vhost's exchanges, queues, bindings and policies as lists of the broker's JSON
        objects (the keys of ``GET /api/definitions/{vhost}``), or None when the vhost does
        not exist. ``with_stats``: each queue also carries ``messages`` and ``consumers``."""
        return self._read_kinds(self._connect(), [vhost], with_stats)[vhost]

    def _read_kinds(
        self, node: Node, vhosts: Sequence[str], with_stats: bool
    ) -> dict[str, dict[str, Any] | None]:
        """One request per kind of object and vhost, all sent at once (see ``_KINDS``)."""
        wanted = [
            (vhost, kind, f"/api/{kind}/{_q(vhost)}" + (f"?{query}" if query else ""))
            for vhost in vhosts
            for kind, query in _KINDS
        ]
        if with_stats:  # the counts a prune checks, in the same request as the queues
            wanted = [
                (v, k, f"/api/queues/{_q(v)}?columns={_QUEUE_COLUMNS},messages,consumers")
                if k == "queues"
                else (v, k, path)
                for v, k, path in wanted
            ]
        if not wanted:  # a file of users alone names no vhost to read
            return {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(wanted)) as pool:
            answers = list(pool.map(lambda request: self._get_kind(node, request), wanted))
        found: dict[str, dict[str, Any] | None] = {vhost: {} for vhost in vhosts}
        for (vhost, kind, _), answer in zip(wanted, answers, strict=True):
            objects = found[vhost]
            if answer is None or objects is None:
                found[vhost] = None  # the vhost does not exist (yet)
            else:
                objects[kind] = answer
        return found

    def _get_kind(self, node: Node, request: tuple[str, str, str]) -> list[Any] | None:
        """The objects one GET lists, decoded in the worker thread while the other requests
        wait for the broker; None when the vhost does not exist."""
        vhost, kind, path = request
        response = self.request("GET", path, refused_ok=True, node=node)
        # 404 on newer versions; 3.10 answers 400 {"reason": "vhost_not_found"} to some.
        if response.status_code == 404 or (
            response.status_code == 400 and "not_found" in response.text
        ):
            return None
        if response.status_code == 401:
            raise AuthenticationFailed(
                f"user '{self.address.user}' may not read vhost '{vhost}' (the management "
                "API refused it: the user needs the management, policymaker or "
                "administrator tag and permissions on that vhost); nothing was changed"
            )
        checked = self.checked(response, f"reading the {kind} of vhost '{vhost}'")
        with paused_gc():  # tens of thousands of dicts, no cycle (see _gc)
            listed: list[Any] = checked.json()
        return listed

    def queue_stats(self, vhost: str) -> dict[tuple[str, str], QueueStats]:
        """Each queue's message and consumer counts (sampled by the management API)."""
        response = self.checked(
            self.request("GET", f"/api/queues/{_q(vhost)}?columns=name,messages,consumers"),
            f"reading queue counts of vhost '{vhost}'",
        )
        return _queue_stats(vhost, response.json())

    def read(self, vhosts: Sequence[str], with_stats: bool = False) -> BrokerState:
        """Everything ``plan`` needs, read in one round of concurrent requests.

        The first read does not wait for ``/api/overview`` to tell which node answers: it
        asks the first node for the vhosts at the same time (a round trip less, and the
        broker lists while it answers the overview). That guess is used only when the first
        node is the one ``_connect`` chose; otherwise its answers, and its errors, are
        dropped and the chosen node is asked.
        """
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            if self.node is None:
                self._network()
                guess = self.address.nodes[0]
                early = pool.submit(self._read_node, guess, vhosts, with_stats)
                try:
                    node = self._connect()
                finally:
                    early.exception()  # the guess finishes before anything is raised
                if node == guess:
                    found, default_types = early.result()
                else:
                    found, default_types = self._read_node(node, vhosts, with_stats)
            else:
                found, default_types = self._read_node(self.node, vhosts, with_stats)
        from ._broker_json import from_definitions
        from ._model import merge

        parts: list[Topology] = []
        stats: dict[tuple[str, str], QueueStats] = {}
        for vhost in vhosts:
            definitions = found[vhost]
            if definitions is None:
                continue
            with paused_gc():
                parts.append(from_definitions(vhost, definitions))
            if with_stats:
                stats.update(_queue_stats(vhost, definitions["queues"]))
        return BrokerState(
            merge(parts),
            stats,
            self.version,
            tuple(self.exchange_types),
            default_types,
        )

    def _read_node(
        self, node: Node, vhosts: Sequence[str], with_stats: bool
    ) -> tuple[dict[str, dict[str, Any] | None], dict[str, str]]:
        """The vhosts' objects by kind, and the vhosts' default queue types (asked for
        meanwhile; needed only when a vhost exists), from ``node``."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            defaults = pool.submit(self._default_queue_types, node)
            found = self._read_kinds(node, vhosts, with_stats)
            exists = any(objects is not None for objects in found.values())
            return found, defaults.result() if exists else {}

    def default_queue_types(self) -> dict[str, str]:
        """Vhosts whose queues are quorum or stream queues unless they name a type."""
        return self._default_queue_types(self._connect())

    def _default_queue_types(self, node: Node) -> dict[str, str]:
        response = self.checked(
            self.request("GET", "/api/vhosts?columns=name,default_queue_type", node=node),
            "listing vhosts",
        )
        return {
            v["name"]: str(v.get("default_queue_type"))
            for v in response.json()
            if v.get("default_queue_type") in ("quorum", "stream")
        }

    def put_vhost(
        self, name: str, settings: Mapping[str, Any] | None = None, *, creating: bool = True
    ) -> None:
        """Create a vhost (``creating``: and grant the connecting user every permission in
        it), or write an existing vhost's metadata; ``settings`` is the body (see
        ``VhostSettings.settings``). The one place that sends ``PUT /api/vhosts/{name}``."""
        self.checked(
            self.request("PUT", f"/api/vhosts/{_q(name)}", json=dict(settings or {})),
            f"creating vhost '{name}'" if creating else f"writing the metadata of vhost '{name}'",
        )
        if not creating:
            return
        # The user that creates a vhost gets no permissions in it by itself.
        self.checked(
            self.request(
                "PUT",
                f"/api/permissions/{_q(name)}/{_q(self.address.user)}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ),
            f"granting '{self.address.user}' permissions on vhost '{name}'",
        )

    def permissions_of(self, user: str) -> list[dict[str, Any]] | None:
        """``user``'s permissions in every vhost; None when this user may not read them
        (only an administrator may)."""
        response = self.request("GET", f"/api/users/{_q(user)}/permissions", refused_ok=True)
        if response.status_code != 200:
            return None
        found: list[dict[str, Any]] = response.json()
        return found

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost and everything in it (the rollback's undo of a vhost it created)."""
        self._delete(f"/api/vhosts/{_q(name)}", f"deleting vhost '{name}'")

    def put_policy(self, p: PolicySpec) -> None:
        """Create or replace the policy ``p``."""
        self.checked(
            self.request("PUT", f"/api/policies/{_q(p.vhost)}/{_q(p.name)}", json=p.body()),
            f"writing policy '{p.name}' in vhost '{p.vhost}'",
        )

    def delete_policy(self, vhost: str, name: str) -> None:
        """Delete a policy (gone already is fine)."""
        self._delete(
            f"/api/policies/{_q(vhost)}/{_q(name)}", f"deleting policy '{name}' in vhost '{vhost}'"
        )

    # ---------------------------------------------------------- access: who may do what

    def whoami(self) -> dict[str, Any]:
        """The connecting user as the broker sees it (``name``, ``tags``); empty when the
        broker does not say."""
        response = self.request("GET", "/api/whoami")
        found: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return found

    def list_users(self, names_only: bool = False) -> list[dict[str, Any]]:
        """Every user (administrator only); ``names_only``: just their names."""
        path = "/api/users?columns=name" if names_only else "/api/users"
        return self._list(path, "listing users")

    def list_user_limits(self) -> list[dict[str, Any]]:
        """Every user's limits (``{"user": ..., "value": {...}}``)."""
        return self._list("/api/user-limits", "reading user limits")

    def list_permissions(self) -> list[dict[str, Any]]:
        """Every user's permissions in every vhost."""
        return self._list("/api/permissions", "listing permissions")

    def list_topic_permissions(self) -> list[dict[str, Any]]:
        """Every user's topic permissions in every vhost."""
        return self._list("/api/topic-permissions", "listing topic permissions")

    def list_vhosts(self) -> list[dict[str, Any]]:
        """Every vhost with its metadata (description, tags, default queue type)."""
        return self._list("/api/vhosts", "listing vhosts")

    def list_vhost_limits(self) -> list[dict[str, Any]]:
        """Every vhost's limits (``{"vhost": ..., "value": {...}}``)."""
        return self._list("/api/vhost-limits", "reading vhost limits")

    def operator_policies(self, vhost: str) -> list[dict[str, Any]] | None:
        """The operator policies of ``vhost``; None when the vhost does not exist or this
        user may not read them."""
        return self._list_or_none(f"/api/operator-policies/{_q(vhost)}", "operator policies")

    def import_definitions(self, body: Mapping[str, Any], what: str) -> None:
        """``POST /api/definitions``: users, permissions and topic permissions in one
        request; ``what`` names them in an error."""
        self.checked(self.request("POST", "/api/definitions", json=dict(body)), what)

    def put_user_limit(self, user: str, limit: str, value: int | None) -> None:
        """Set one limit of a user (``max-connections``...); None or negative removes it."""
        self._put_limit(
            f"/api/user-limits/{_q(user)}/{limit}", value, f"setting {limit} of user '{user}'"
        )

    def put_vhost_limit(self, vhost: str, limit: str, value: int | None) -> None:
        """Set one limit of a vhost (``max-queues``...); None or negative removes it."""
        self._put_limit(
            f"/api/vhost-limits/{_q(vhost)}/{limit}", value, f"setting {limit} of vhost '{vhost}'"
        )

    def delete_user(self, name: str) -> None:
        """Delete a user (gone already is fine)."""
        self._delete(f"/api/users/{_q(name)}", f"deleting user '{name}'")

    def delete_permission(self, vhost: str, user: str, what: str) -> None:
        """Remove ``user``'s permissions in ``vhost``."""
        self._delete(f"/api/permissions/{_q(vhost)}/{_q(user)}", what)

    def topic_permissions_of(self, vhost: str, user: str) -> list[dict[str, Any]]:
        """``user``'s topic permissions in ``vhost`` (none when unreadable)."""
        response = self.request("GET", f"/api/topic-permissions/{_q(vhost)}/{_q(user)}")
        found: list[dict[str, Any]] = response.json() if response.status_code == 200 else []
        return found

    def delete_topic_permissions(self, vhost: str, user: str, what: str) -> None:
        """Remove all of ``user``'s topic permissions in ``vhost`` (the API has no finer
        delete)."""
        self._delete(f"/api/topic-permissions/{_q(vhost)}/{_q(user)}", what)

    def put_topic_permission(
        self, vhost: str, user: str, exchange: str, write: str, read: str
    ) -> None:
        """Set ``user``'s topic permission on one exchange of ``vhost``."""
        self.checked(
            self.request(
                "PUT",
                f"/api/topic-permissions/{_q(vhost)}/{_q(user)}",
                json={"exchange": exchange, "write": write, "read": read},
            ),
            f"restoring topic permissions of '{user}'",
        )

    def put_operator_policy(self, p: PolicySpec, what: str) -> None:
        """Create or replace an operator policy."""
        self.checked(
            self.request(
                "PUT", f"/api/operator-policies/{_q(p.vhost)}/{_q(p.name)}", json=p.body()
            ),
            what,
        )

    def delete_operator_policy(self, vhost: str, name: str) -> None:
        """Delete an operator policy (gone already is fine)."""
        self._delete(
            f"/api/operator-policies/{_q(vhost)}/{_q(name)}", f"deleting operator policy '{name}'"
        )

    # ---------------------------------------------------------- runtime parameters and plugins

    def parameters(self, component: str, vhost: str, what: str) -> list[dict[str, Any]] | None:
        """The runtime parameters of ``component`` (``federation-upstream``, ``shovel``) in
        ``vhost``; None when the vhost does not exist or this user may not read them."""
        return self._list_or_none(f"/api/parameters/{component}/{_q(vhost)}", what)

    def put_parameter(self, component: str, vhost: str, name: str, value: Any, what: str) -> None:
        """Create or replace one runtime parameter with ``value``."""
        self.checked(
            self.request(
                "PUT",
                f"/api/parameters/{component}/{_q(vhost)}/{_q(name)}",
                json={"component": component, "vhost": vhost, "name": name, "value": value},
            ),
            what,
        )

    def parameter_value(self, component: str, vhost: str, name: str, what: str) -> Any:
        """One runtime parameter's value as the broker holds it (URIs with their passwords:
        for writing it back, never for showing), or None when it does not exist or this user
        may not read it."""
        response = self.request(
            "GET", f"/api/parameters/{component}/{_q(vhost)}/{_q(name)}", refused_ok=True
        )
        if response.status_code in (401, 404):
            return None
        return self.checked(response, f"reading {what}").json().get("value")

    def delete_parameter(self, component: str, vhost: str, name: str, what: str) -> None:
        """Delete one runtime parameter (gone already is fine)."""
        self._delete(f"/api/parameters/{component}/{_q(vhost)}/{_q(name)}", what)

    def federation_enabled(self) -> bool:
        """Whether the federation plugin runs: its exchange type is listed, or its links
        answer (401: this user may not list them, so the plugin runs)."""
        return "x-federation-upstream" in self.exchange_types or self.request(
            "GET", "/api/federation-links", refused_ok=True
        ).status_code in (200, 401)

    def _list(self, path: str, what: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.checked(self.request("GET", path), what).json()
        return found

    def _list_or_none(self, path: str, what: str) -> list[dict[str, Any]] | None:
        response = self.request("GET", path, refused_ok=True)
        if response.status_code in (401, 404):
            return None
        found: list[dict[str, Any]] = self.checked(response, f"reading {what}").json()
        return found

    def _put_limit(self, path: str, value: int | None, what: str) -> None:
        if value is None or value < 0:
            self._delete(path, what)
        else:
            self.checked(self.request("PUT", path, json={"value": value}), what)

    def _delete(self, path: str, what: str) -> None:
        response = self.request("DELETE", path)
        if response.status_code != 404:
            self.checked(response, what)

    # ---------------------------------------------------------- what migrations read (_migrate)

    def queue(self, vhost: str, name: str, stats: bool = False) -> dict[str, Any] | None:
        """One queue as the broker holds it (its arguments from the broker's database, not
        sampled), or None when it does not exist; ``stats`` adds the sampled counts."""
        query = "" if stats else "?disable_stats=true"
        response = self.request("GET", f"/api/queues/{_q(vhost)}/{_q(name)}{query}")
        if response.status_code == 404:
            return None
        found: dict[str, Any] = self.checked(response, f"reading queue '{name}'").json()
        return found

    def queue_bindings(self, vhost: str, name: str) -> list[BindingSpec]:
        """The bindings of one queue, the default exchange's implicit one left out."""
        response = self.request("GET", f"/api/queues/{_q(vhost)}/{_q(name)}/bindings")
        if response.status_code == 404:
            return []
        from ._model import BindingSpec

        return [
            BindingSpec.read(vhost, {**b, "destination_type": "queue"})
            for b in self.checked(response, f"reading the bindings of queue '{name}'").json()
            if b.get("source")
        ]

    def connection(self, name: str) -> dict[str, Any] | None:
        """One client connection (by the broker's name for it), or None when it is gone."""
        response = self.request("GET", f"/api/connections/{_q(name)}")
        if response.status_code == 404:
            return None
        found: dict[str, Any] = self.checked(response, f"reading connection '{name}'").json()
        return found

    def close_connection(self, name: str, reason: str) -> None:
        """Close a client connection (the broker then deletes its exclusive queues)."""
        response = self.request(
            "DELETE", f"/api/connections/{_q(name)}", headers={"X-Reason": reason}
        )
        if response.status_code != 404:
            self.checked(response, f"closing connection '{name}'")

    def shovels_enabled(self) -> bool:
        """Whether the shovel plugin (with its management part) runs on the broker."""
        return self.request("GET", "/api/shovels", refused_ok=True).status_code in (200, 401)

    def put_shovel(self, vhost: str, name: str, value: Mapping[str, Any]) -> None:
        """Create (or restart) the dynamic shovel ``name`` of ``vhost``."""
        self.put_parameter(
            "shovel", vhost, name, dict(value), f"writing shovel '{name}' in vhost '{vhost}'"
        )

    def shovel_exists(self, vhost: str, name: str) -> bool:
        """Whether the dynamic shovel's parameter is still there (it deletes itself when done)."""
        response = self.request("GET", f"/api/parameters/shovel/{_q(vhost)}/{_q(name)}")
        if response.status_code == 404:
            return False
        self.checked(response, f"reading shovel '{name}' in vhost '{vhost}'")
        return True

    def delete_shovel(self, vhost: str, name: str) -> None:
        """Stop and remove a dynamic shovel (its unconfirmed messages go back to its source)."""
        self.delete_parameter("shovel", vhost, name, f"deleting shovel '{name}' in vhost '{vhost}'")
