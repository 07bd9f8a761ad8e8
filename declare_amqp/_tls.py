"""TLS for amqps:// and https://: which CA to trust, which client certificate to present.

Options (flags win over the environment):

- ``--tls-ca-file`` / ``AMQP_TLS_CA_FILE``: the CA bundle the broker's certificate is
  verified against. Without it the system trust store is used, so ``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR`` work as for every Python TLS client.
- ``--tls-cert-file`` / ``AMQP_TLS_CERT_FILE`` and ``--tls-key-file`` / ``AMQP_TLS_KEY_FILE``:
  a client certificate (and its key, unless the certificate file holds it).
- ``--auth-mechanism external`` / ``AMQP_AUTH_MECHANISM=external``: log in over AMQP with the
  client certificate (SASL EXTERNAL, the broker's ``rabbitmq_auth_mechanism_ssl``) instead of
  a password.

Verification is never switched off. A failed check becomes one line naming it:
``tls_failure`` is used at both edges (``_broker`` for HTTP, ``_amqp`` for AMQP).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from ._errors import BrokerError

AUTH_MECHANISMS = ("plain", "external")


class TlsError(BrokerError):
    """The TLS handshake failed a check (trust, host name, client certificate)."""


@dataclass(frozen=True)
class TlsOptions:
    """Where the CA bundle and the client certificate are; None: not given."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    auth_mechanism: str = "plain"

    @classmethod
    def resolve(
        cls,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        auth_mechanism: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> TlsOptions:
        """The options from flags, else from ``AMQP_TLS_*`` / ``AMQP_AUTH_MECHANISM``."""
        env = os.environ if env is None else env
        mechanism = (auth_mechanism or env.get("AMQP_AUTH_MECHANISM") or "plain").lower()
        if mechanism not in AUTH_MECHANISMS:
            raise BrokerError(f"the auth mechanism must be plain or external, not '{mechanism}'")
        options = cls(
            ca_file or env.get("AMQP_TLS_CA_FILE") or None,
            cert_file or env.get("AMQP_TLS_CERT_FILE") or None,
            key_file or env.get("AMQP_TLS_KEY_FILE") or None,
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
        """A verifying client context (the system trust store unless a CA file is named)."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            which = (
                "CA file"
                if self.ca_file and not _loaded(self.ca_file)
                else "client certificate or key"
            )
            raise TlsError(
                f"cannot load the TLS {which}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        return context


def _loaded(path: str) -> bool:
    try:
        ssl.create_default_context(cafile=path)
        return True
    except (OSError, ssl.SSLError):
        return False


def tls_failure(exc: BaseException | None, where: str) -> TlsError | None:
    """A one-line TlsError when ``exc`` (or what caused it) is a failed TLS check."""
    for inner in getattr(exc, "exceptions", None) or ():  # pika's workflow failures
        found = tls_failure(inner, where)
        if found is not None:
            return found
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLCertVerificationError):
            message = exc.verify_message or str(exc)
            if "hostname" in message.lower() or "ip address mismatch" in message.lower():
                return TlsError(
                    f"TLS host name check failed at {where}: {message} (connect "
                    "with a name the broker's certificate lists); nothing was "
                    "read or changed"
                )
            return TlsError(
                f"TLS certificate verification failed at {where}: {message} "
                "(the broker's certificate is not signed by a trusted CA: give "
                "its CA with --tls-ca-file or AMQP_TLS_CA_FILE); nothing was read "
                "or changed"
            )
        if isinstance(exc, ssl.SSLError):
            reason = getattr(exc, "reason", None) or str(exc)
            return TlsError(
                f"TLS handshake failed at {where}: {reason} (a client "
                "certificate the broker requires or refuses?); nothing was read or "
                "changed"
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
