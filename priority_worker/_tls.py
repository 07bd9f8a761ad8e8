"""TLS for amqps:// links: the CA to trust, a client certificate, EXTERNAL login.

From the environment (the same names declare-amqp reads; the runner's ``--tls-*`` and
``--auth-mechanism`` flags set them): ``AMQP_TLS_CA_FILE`` (default: the system trust store,
so ``SSL_CERT_FILE`` works), ``AMQP_TLS_CERT_FILE`` and ``AMQP_TLS_KEY_FILE`` (a client
certificate), ``AMQP_AUTH_MECHANISM=external`` (log in with the certificate). Verification is
never switched off; ``tls_reason`` turns a failed handshake into one line naming the check.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV = {
    "ca_file": "AMQP_TLS_CA_FILE",
    "cert_file": "AMQP_TLS_CERT_FILE",
    "key_file": "AMQP_TLS_KEY_FILE",
    "auth_mechanism": "AMQP_AUTH_MECHANISM",
}


@dataclass(frozen=True)
class TlsSettings:
    """Where the CA bundle and the client certificate are (None: not given)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    auth_mechanism: str = "plain"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TlsSettings:
        env = os.environ if env is None else env
        return cls(
            env.get(ENV["ca_file"]) or None,
            env.get(ENV["cert_file"]) or None,
            env.get(ENV["key_file"]) or None,
            (env.get(ENV["auth_mechanism"]) or "plain").lower(),
        )

    def context(self) -> ssl.SSLContext:
        """A verifying client context."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def configure(self, params: Any, host: str) -> None:
        """Put this TLS and login setup on pika connection parameters."""
        import pika
        import pika.credentials

        if params.ssl_options is not None:  # an amqps:// URL
            params.ssl_options = pika.SSLOptions(self.context(), server_hostname=host)
        if self.auth_mechanism == "external":
            params.credentials = pika.credentials.ExternalCredentials()


def tls_reason(error: BaseException | None) -> str | None:
    """``TLS certificate verification failed: ...`` / ``TLS host name check failed: ...``
    when ``error`` is (or wraps) a failed TLS check, else None."""
    for inner in getattr(error, "exceptions", None) or ():
        found = tls_reason(inner)
        if found:
            return found
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, ssl.SSLCertVerificationError):
            message = error.verify_message or str(error)
            if "hostname" in message.lower() or "ip address mismatch" in message.lower():
                return f"TLS host name check failed: {message}"
            return f"TLS certificate verification failed: {message} (set AMQP_TLS_CA_FILE)"
        if isinstance(error, ssl.SSLError):
            return f"TLS handshake failed: {getattr(error, 'reason', None) or error}"
        inner = getattr(error, "exception", None)
        error = (
            inner if isinstance(inner, BaseException) else (error.__cause__ or error.__context__)
        )
        seen += 1
    return None
