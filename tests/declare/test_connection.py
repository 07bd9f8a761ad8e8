"""Broker addresses: URL precedence, derived management URLs, and the password kept out."""

from __future__ import annotations

import pytest

from declare_amqp import DeclareAmqpError, resolve_address
from declare_amqp._connection import redact


def test_url_option_beats_environment() -> None:
    a = resolve_address(["amqp://u:p@h1:5673/v"], env={"AMQP_URL": "amqp://x:y@other/"})
    assert (a.nodes[0].host, a.nodes[0].port, a.user, a.password, a.url_vhost) == (
        "h1",
        5673,
        "u",
        "p",
        "v",
    )
    assert a.nodes[0].management_url == "http://h1:15672"


def test_several_urls_make_a_node_list_for_failover() -> None:
    a = resolve_address(["amqp://u:p@n1:5681,amqp://n2:5682", "amqp://n3:5683"], env={})
    assert [(n.host, n.port) for n in a.nodes] == [("n1", 5681), ("n2", 5682), ("n3", 5683)]
    assert [n.management_url for n in a.nodes] == [
        "http://n1:15672",
        "http://n2:15672",
        "http://n3:15672",
    ]
    assert a.user == "u"


def test_original_environment_variables() -> None:
    a = resolve_address(
        [], env={"AMQP_HOST": "rabbit.local", "AMQP_USER": "app", "AMQP_PASS": "pw"}
    )
    assert (a.nodes[0].host, a.nodes[0].port, a.user, a.password) == (
        "rabbit.local",
        5672,
        "app",
        "pw",
    )


def test_amqps_uses_tls_and_https_management() -> None:
    a = resolve_address(["amqps://h"], env={})
    assert a.nodes[0].tls and a.nodes[0].port == 5671
    assert a.nodes[0].management_url == "https://h:15671"


def test_explicit_management_url() -> None:
    a = resolve_address(["amqp://h"], ["http://mgmt:8080/"], env={})
    assert a.nodes[0].management_url == "http://mgmt:8080"


def test_password_never_in_repr_or_str() -> None:
    a = resolve_address(["amqp://u:Sup3r%2Fsecret@h/"], env={})
    assert a.password == "Sup3r/secret"
    assert "Sup3r" not in repr(a) and "Sup3r" not in str(a)


def test_redact_replaces_plain_and_quoted_forms() -> None:
    text = "amqp://u:Sup3r%2Fsecret@h failed; password Sup3r/secret"
    assert "Sup3r" not in redact(text, "Sup3r/secret")


def test_bad_scheme_is_an_error_without_the_password() -> None:
    with pytest.raises(DeclareAmqpError) as info:
        resolve_address(["http://u:hunter2@h/"], env={})
    assert "hunter2" not in str(info.value) and "amqp://" in str(info.value)
