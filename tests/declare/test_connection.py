"""Broker addresses (URL precedence, derived management URLs) and the shared URL, password
and TLS modules (declare_amqp.urls, declare_amqp.tls) that priority_worker uses too: this is
the one test suite of redaction."""

from __future__ import annotations

import argparse
import ssl

import pytest

from declare_amqp import BrokerError, DeclareAmqpError, resolve_address
from declare_amqp.tls import (
    TlsError,
    TlsOptions,
    add_tls_arguments,
    tls_environment,
    tls_failure,
    tls_reason,
)
from declare_amqp.urls import redact, redact_url, scrub, secret_forms, split_urls, url_secrets


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
    """A decoded password is also found in its percent-encoded form (as in a URL)."""
    text = "amqp://u:Sup3r%2Fsecret@h failed; password Sup3r/secret"
    assert redact(text, "Sup3r/secret") == "amqp://u:***@h failed; password ***"
    assert redact("nothing to hide", "") == "nothing to hide"


def test_split_urls_accepts_lists_and_commas_in_order() -> None:
    """Several URLs, repeated and/or comma-separated, keep their order; blanks are dropped."""
    assert split_urls("amqp://a/, amqp://b/") == ["amqp://a/", "amqp://b/"]
    assert split_urls(["amqp://a/", "amqp://b/,amqp://c/", " , "]) == [
        "amqp://a/",
        "amqp://b/",
        "amqp://c/",
    ]
    assert split_urls([]) == [] and split_urls("") == []


def test_redact_url_hides_only_the_password() -> None:
    """The user, host, port and vhost stay readable; the password becomes ***."""
    assert redact_url("amqp://bob:s%40cret@h:5673/v") == "amqp://bob:***@h:5673/v"
    assert redact_url("amqp://bob:p:w@h/") == "amqp://bob:***@h/"
    assert redact_url("amqp://h/") == "amqp://h/"
    assert redact_url("amqp://bob@h/") == "amqp://bob@h/"
    assert redact_url("amqp://u:pw@[::1/") == "<unparseable url>"


def test_url_secrets_holds_every_form_of_each_password() -> None:
    """As written in the URL, decoded, and encoded again: text quoting any of them is
    scrubbed. Unparseable URLs and URLs without a password add nothing."""
    secrets = url_secrets(["amqp://bob:s%40cret@h/", "amqp://h/", "amqp://u:x@[::1/"])
    assert {"s%40cret", "s@cret"} <= secrets
    assert scrub("x s@cret y s%40cret", secrets) == "x *** y ***"
    assert url_secrets(["amqp://bob:@h/"]) == set()


def test_scrub_replaces_the_longest_form_first() -> None:
    """A password that contains another form of itself is never left half-replaced."""
    forms = secret_forms("a/b")
    assert forms == {"a/b", "a%2Fb"}
    assert scrub("[a%2Fb] [a/b]", forms) == "[***] [***]"
    assert scrub("p and pw", {"p", "pw"}) == "*** and ***"
    assert scrub("kept", set()) == "kept"


def test_redact_scrubs_a_message_naming_the_user_on_every_line() -> None:
    """An apply refused object by object names user 'guest' (whose password is guest) once a
    line: the quoted name stays, a credential field right before a value is still scrubbed,
    and 40,000 lines are done in linear time (the credential check searched the whole text
    before every occurrence: 20,000 lines took minutes; the per-test timeout catches that)."""
    lines = [f"queue 'q{i}': access refused for user 'guest'" for i in range(40_000)]
    text = "\n".join([*lines, 'then {"password": "guest"}'])
    scrubbed = redact(text, "guest")
    assert scrubbed.count("user 'guest'") == 40_000
    assert scrubbed.endswith('{"password": "***"}')
    assert redact("password =  'guest' for 'guest'", "guest") == "password =  '***' for 'guest'"


def test_redaction_is_the_same_in_both_packages() -> None:
    """priority_worker's log filter and declare_amqp's addresses use the one implementation."""
    import logging

    from priority_worker._log import SecretFilter

    address = resolve_address(["amqp://u:Sup3r%2Fsecret@h/"], env={})
    text = "failed: amqp://u:Sup3r%2Fsecret@h/ (Sup3r/secret)"
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, text, None, None)
    SecretFilter(url_secrets(["amqp://u:Sup3r%2Fsecret@h/"])).filter(record)
    assert record.getMessage() == address.redact(text) == "failed: amqp://u:***@h/ (***)"


def test_tls_flags_are_the_same_options_as_the_environment() -> None:
    """The --tls-* and --auth-mechanism flags stand for the AMQP_TLS_* variables."""
    parser = argparse.ArgumentParser()
    add_tls_arguments(parser)
    args = parser.parse_args(["--tls-ca-file", "ca.pem", "--auth-mechanism", "external"])
    assert tls_environment(args) == {
        "AMQP_TLS_CA_FILE": "ca.pem",
        "AMQP_AUTH_MECHANISM": "external",
    }
    assert tls_environment(parser.parse_args([])) == {}
    with pytest.raises(SystemExit):
        parser.parse_args(["--auth-mechanism", "kerberos"])


def test_tls_options_from_the_environment_and_checked() -> None:
    """from_env reads the variables as they are; resolve lets flags win and checks them."""
    env = {"AMQP_TLS_CA_FILE": "ca.pem", "AMQP_AUTH_MECHANISM": "EXTERNAL"}
    assert TlsOptions.from_env(env) == TlsOptions("ca.pem", None, None, "external")
    assert TlsOptions.resolve(ca_file="mine.pem", env=env | {"AMQP_TLS_CERT_FILE": "c"}) == (
        TlsOptions("mine.pem", "c", None, "external")
    )
    with pytest.raises(BrokerError, match="without a certificate"):
        TlsOptions.resolve(key_file="k.pem", env={})
    with pytest.raises(BrokerError, match="client certificate"):
        TlsOptions.resolve(auth_mechanism="external", env={})
    with pytest.raises(BrokerError, match="plain or external"):
        TlsOptions.resolve(auth_mechanism="kerberos", env={})


def test_tls_context_names_the_file_it_cannot_load() -> None:
    """A missing CA file is a TlsError that says which file it was."""
    with pytest.raises(TlsError, match="cannot load the TLS CA file"):
        TlsOptions(ca_file="/nonexistent/ca.pem").context()
    assert TlsOptions().context().verify_mode == ssl.CERT_REQUIRED


def test_tls_reason_finds_the_failed_check_in_wrapped_errors() -> None:
    """A failed verification is found through causes, ``.exception`` and grouped errors."""
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    try:
        try:
            raise verify
        except ssl.SSLError as exc:
            raise ConnectionError("connect failed") from exc
    except ConnectionError as wrapped:
        outer = wrapped
    reason = tls_reason(outer, "h:5671")
    assert reason is not None
    assert reason.startswith("TLS certificate verification failed at h:5671")
    assert "AMQP_TLS_CA_FILE" in reason

    host = ssl.SSLCertVerificationError(1, "certificate verify failed")
    host.verify_message = "Hostname mismatch, certificate is not valid for 'x'"
    group = type("Group", (Exception,), {})("all failed")
    group.exceptions = [ValueError("other"), host]  # type: ignore[attr-defined]
    assert (tls_reason(group, "x:5671") or "").startswith("TLS host name check failed at x:5671")

    assert tls_reason(ValueError("no TLS here"), "h") is None
    failure = tls_failure(ssl.SSLError(1, "handshake"), "h:5671")
    assert isinstance(failure, TlsError) and str(failure).endswith("nothing was read or changed")


def test_bad_scheme_is_an_error_without_the_password() -> None:
    with pytest.raises(DeclareAmqpError) as info:
        resolve_address(["http://u:hunter2@h/"], env={})
    assert "hunter2" not in str(info.value) and "amqp://" in str(info.value)
