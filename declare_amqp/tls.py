"""TLS for amqps:// and https://: which CA to trust, which client certificate to present.

Shared by declare_amqp and priority_worker (which imports it): the same flags, the same
environment variables, the same verifying context and the same one-line reasons for a failed
handshake in both tools. Pure: no I/O beyond reading the named files when a context is made,
and no pika (each package puts the context on its own connection parameters).

Options (flags win over the environment):

- ``--tls-ca-file`` / ``AMQP_TLS_CA_FILE``: the CA bundle the broker's certificate is
  verified against. Without it the system trust store is used, so ``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR`` work as for every Python TLS client.
- ``--tls-cert-file`` / ``AMQP_TLS_CERT_FILE`` and ``--tls-key-file`` / ``AMQP_TLS_KEY_FILE``:
  a client certificate (and its key, unless the certificate file holds it).
- ``--auth-mechanism external`` / ``AMQP_AUTH_MECHANISM=external``: log in over AMQP with the
  client certificate (SASL EXTERNAL, the broker's ``rabbitmq_auth_mechanism_ssl``) instead of
  a password.

Verification is never switched off. :func:`tls_reason` turns a failed check into one line
naming it; :func:`tls_failure` is the same as declare_amqp's :class:`TlsError`.
"""

from __future__ import annotations

import argparse
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import BrokerError

__all__ = [
    "AUTH_MECHANISMS",
    "ENV",
    "TlsError",
    "TlsOptions",
    "add_tls_arguments",
    "tls_environment",
    "tls_failure",
    "tls_reason",
]

AUTH_MECHANISMS = ("plain", "external")

# TlsOptions field -> the environment variable that sets it.
ENV = {
    "ca_file": "AMQP_TLS_CA_FILE",
    "cert_file": "AMQP_TLS_CERT_FILE",
    "key_file": "AMQP_TLS_KEY_FILE",
    "auth_mechanism": "AMQP_AUTH_MECHANISM",
}
# TlsOptions field -> the argparse destination of its flag (see add_tls_arguments).
_FLAG_DEST = {
    "ca_file": "tls_ca_file",
    "cert_file": "tls_cert_file",
    "key_file": "tls_key_file",
    "auth_mechanism": "auth_mechanism",
}


class TlsError(BrokerError):
    """The TLS handshake failed a check (trust, host name, client certificate), or the CA file
    or client certificate could not be loaded."""


@dataclass(frozen=True)
class TlsOptions:
    """Where the CA bundle and the client certificate are; None: not given."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    auth_mechanism: str = "plain"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TlsOptions:
        """The options the environment gives, unchecked (a worker's link reads them at each
        connect; a bad file then fails that connect with a reason, not the process)."""
        env = os.environ if env is None else env
        return cls(
            env.get(ENV["ca_file"]) or None,
            env.get(ENV["cert_file"]) or None,
            env.get(ENV["key_file"]) or None,
            (env.get(ENV["auth_mechanism"]) or "plain").lower(),
        )

    @classmethod
    def resolve(
        cls,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        auth_mechanism: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> TlsOptions:
        """The options from flags, else from ``AMQP_TLS_*`` / ``AMQP_AUTH_MECHANISM``, checked:
        raises BrokerError for an unknown mechanism, a key without a certificate, or EXTERNAL
        without a certificate."""
        env = os.environ if env is None else env
        mechanism = (auth_mechanism or env.get(ENV["auth_mechanism"]) or "plain").lower()
        if mechanism not in AUTH_MECHANISMS:
            raise BrokerError(f"the auth mechanism must be plain or external, not '{mechanism}'")
        options = cls(
            ca_file or env.get(ENV["ca_file"]) or None,
            cert_file or env.get(ENV["cert_file"]) or None,
            key_file or env.get(ENV["key_file"]) or None,
            mechanism,
        )
        if options.key_file and not options.cert_file:
            raise BrokerError(
                "a TLS key file was given without a certificate file "
                "(--tls-cert-file / AMQP_TLS_CERT_FILE)"
            )
        if mechanism == "external" and not options.cert_file:
            raise BrokerError(
                "--auth-mechanism external logs in with a client certificate: "
                "give one with --tls-cert-file / AMQP_TLS_CERT_FILE"
            )
        return options

    def context(self) -> ssl.SSLContext:
        """A verifying client context (the system trust store unless a CA file is named);
        raises TlsError naming the file that could not be loaded."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            which = (
                "CA file"
                if self.ca_file and not _loads(self.ca_file)
                else "client certificate or key"
            )
            raise TlsError(
                f"cannot load the TLS {which}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        return context


def _loads(path: str) -> bool:
    try:
        ssl.create_default_context(cafile=path)
        return True
    except (OSError, ssl.SSLError):
        return False


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--tls-*`` and ``--auth-mechanism`` flags, as both command lines offer them."""
    parser.add_argument(
        "--tls-ca-file",
        metavar="FILE",
        help="CA bundle to verify the broker's certificate (default: the "
        f"system trust store, SSL_CERT_FILE; env {ENV['ca_file']})",
    )
    parser.add_argument(
        "--tls-cert-file", metavar="FILE", help=f"client certificate (env {ENV['cert_file']})"
    )
    parser.add_argument(
        "--tls-key-file",
        metavar="FILE",
        help=f"key of the client certificate (env {ENV['key_file']})",
    )
    parser.add_argument(
        "--auth-mechanism",
        choices=AUTH_MECHANISMS,
        help="external: log in over AMQP with the client certificate "
        f"(env {ENV['auth_mechanism']}; default plain)",
    )


def tls_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment variables that the flags of :func:`add_tls_arguments` given in
    ``args`` stand for (flags not given are left out)."""
    found: dict[str, str] = {}
    for option, variable in ENV.items():
        value = getattr(args, _FLAG_DEST[option], None)
        if value:
            found[variable] = value
    return found


def tls_reason(exc: BaseException | None, where: str) -> str | None:
    """One line naming the check when ``exc`` (or what it wraps) is a failed TLS check at
    ``where`` (a host:port or URL without credentials), else None."""
    for inner in getattr(exc, "exceptions", None) or ():  # pika's workflow failures
        found = tls_reason(inner, where)
        if found is not None:
            return found
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLCertVerificationError):
            message = exc.verify_message or str(exc)
            if "hostname" in message.lower() or "ip address mismatch" in message.lower():
                return (
                    f"TLS host name check failed at {where}: {message} (connect "
                    "with a name the broker's certificate lists)"
                )
            return (
                f"TLS certificate verification failed at {where}: {message} "
                "(the broker's certificate is not signed by a trusted CA: give "
                f"its CA with --tls-ca-file or {ENV['ca_file']})"
            )
        if isinstance(exc, ssl.SSLError):
            reason = getattr(exc, "reason", None) or str(exc)
            return (
                f"TLS handshake failed at {where}: {reason} (a client "
                "certificate the broker requires or refuses?)"
            )
        inner = getattr(exc, "exception", None)  # pika's connector phase errors wrap it
        exc = (
            inner
            if isinstance(inner, BaseException)
            else (
                exc.__cause__
                or exc.__context__
                or (exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None)
            )
        )
        seen += 1
    return None


def tls_failure(exc: BaseException | None, where: str) -> TlsError | None:
    """:func:`tls_reason` as the TlsError declare-amqp raises (nothing was read or changed:
    it connects before it reads)."""
    reason = tls_reason(exc, where)
    return None if reason is None else TlsError(f"{reason}; nothing was read or changed")
