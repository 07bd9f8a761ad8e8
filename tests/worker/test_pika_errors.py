"""The one exception map for pika (priority_worker._pika.errors), and the link using it."""

from __future__ import annotations

import asyncio
import ssl

import pika.exceptions

from priority_worker._link import ChannelGone
from priority_worker._pika.connection import PikaLink
from priority_worker._pika.errors import (
    PikaError,
    channel_gone,
    close_details,
    connection_lost,
    open_failed,
)


def test_a_broker_close_keeps_its_reply_code_and_text() -> None:
    """404/406 closes are told apart by code (the publisher and the declares rely on it);
    local closes have no code."""
    closed = pika.exceptions.ChannelClosedByBroker(406, "PRECONDITION_FAILED - inequivalent")
    assert close_details(closed) == (406, "406 PRECONDITION_FAILED - inequivalent")
    assert close_details(RuntimeError("gone")) == (None, "gone")
    gone = channel_gone(closed)
    assert isinstance(gone, ChannelGone) and gone.reply_code == 406
    wrong_state = pika.exceptions.ChannelWrongStateError("Channel is closed.")
    assert isinstance(wrong_state, PikaError)
    assert channel_gone(wrong_state).reply_code is None


def test_a_failed_connect_names_the_tls_check_or_the_error() -> None:
    """A failed TLS check is named with where it happened; anything else by its type."""
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "self-signed certificate"
    wrapped = pika.exceptions.AMQPConnectionError(verify)
    assert open_failed(wrapped, "h:5671").startswith(
        "TLS certificate verification failed at h:5671: self-signed certificate"
    )
    assert open_failed(ConnectionRefusedError("refused"), "h:5672") == (
        "ConnectionRefusedError: refused"
    )
    assert open_failed("timed out", "h:5672") == "str: timed out"
    assert connection_lost(pika.exceptions.StreamLostError("reset")) == "StreamLostError: reset"


def test_a_url_pika_cannot_parse_is_retried_with_its_password_hidden() -> None:
    """The link does not crash on a URL pika rejects: it records why (without the password)
    and keeps retrying until closed."""

    async def scenario() -> str | None:
        link = PikaLink(
            ["amqp://user:s3cret@localhost:notaport/"],
            name="test",
            on_open=lambda: None,
            on_lost=lambda reason: None,
        )
        first = link.start()
        error = link.last_error
        await link.close()
        assert first.done()
        return error

    error = asyncio.run(scenario())
    assert error is not None and error.startswith("bad URL amqp://user:***@localhost:notaport/")
    assert "s3cret" not in error
