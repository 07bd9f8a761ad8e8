"""Unit tests of the pure core: no broker, no pika, no event loop."""

from __future__ import annotations

import gzip
import logging
import random
from collections import Counter, deque

import pytest

import priority_worker
from priority_worker import ConfigurationError, Mode, Queue, Reject, Retry, RetryPolicy
from priority_worker._backoff import reconnect_delay
from priority_worker._config import broker_urls
from priority_worker._confirms import ConfirmTracker
from priority_worker._decoding import UndecodableError, decode_body
from priority_worker._log import SecretFilter
from priority_worker._outcomes import Ack, DeadLetter, RetryLater, attempts_of, decide
from priority_worker._scheduling import Dispatcher, effective_prefetch

# --- URLs and secrets -------------------------------------------------------------------------


def test_broker_urls_accepts_lists_and_commas_in_failover_order() -> None:
    """Several broker URLs can come as a list, a comma-separated string, or both."""
    assert broker_urls("amqp://a/, amqp://b/") == ["amqp://a/", "amqp://b/"]
    assert broker_urls(["amqp://a/", "amqp://b/,amqp://c/"]) == [
        "amqp://a/",
        "amqp://b/",
        "amqp://c/",
    ]


def test_broker_urls_rejects_other_schemes_without_leaking_the_password() -> None:
    """A bad URL is a ConfigurationError whose message has the password redacted."""
    with pytest.raises(ConfigurationError) as info:
        broker_urls("http://user:hunter2@host/")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError):
        broker_urls(" , ")


def test_secret_filter_rewrites_records_and_exceptions() -> None:
    """The logging filter scrubs the message, structured fields and exception text."""
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "url=%s", ("amqp://u:pw1@h",), None)
    record.fields = {"url": "amqp://u:pw1@h"}
    try:
        raise RuntimeError("pw1 in error")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    SecretFilter({"pw1"}).filter(record)
    assert "pw1" not in record.getMessage()
    assert "pw1" not in str(record.fields)
    assert record.exc_text is not None and "pw1" not in record.exc_text


# --- Backoff ----------------------------------------------------------------------------------


def test_reconnect_delay_is_capped_exponential_with_jitter() -> None:
    """Delays grow by doubling, never exceed the cap, and never drop below half the ceiling."""
    assert reconnect_delay(0, base=1, cap=30, rand=lambda: 0.0) == 0.5
    assert reconnect_delay(3, base=1, cap=30, rand=lambda: 1.0) == 8.0
    assert reconnect_delay(50, base=1, cap=30, rand=lambda: 1.0) == 30.0
    rng = random.Random(1)
    delays = {reconnect_delay(4, base=1, cap=30, rand=rng.random) for _ in range(20)}
    assert len(delays) > 1 and all(8 <= d <= 16 for d in delays)


def test_retry_delay_doubles_up_to_the_maximum() -> None:
    """Handler-error retries back off exponentially per failure, capped."""
    policy = RetryPolicy(initial_delay=1, multiplier=2, max_delay=5)
    assert [policy.delay_for(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert decide(RuntimeError("x"), 2, policy) == RetryLater(4, 3, "RuntimeError: x")


# --- Decoding ---------------------------------------------------------------------------------


def test_decode_body_by_content_type_and_encoding() -> None:
    """JSON and text are decoded, gzip is unpacked, anything else stays bytes."""
    assert decode_body(b'{"a": 1}', "application/json", None) == {"a": 1}
    assert decode_body(b"[1]", "application/vnd.x+json", None) == [1]
    assert decode_body("é".encode("latin-1"), "text/plain; charset=latin-1", None) == "é"
    assert decode_body(gzip.compress(b'{"a": 2}'), "application/json", "gzip") == {"a": 2}
    assert decode_body(b"\x00\x01", None, None) == b"\x00\x01"


@pytest.mark.parametrize(
    ("body", "ctype", "encoding"),
    [
        (b"{not json", "application/json", None),
        (b"\xff\xfe", "text/plain", None),
        (b"plain", "text/plain", "zstd"),
        (b"not gzip", None, "gzip"),
    ],
)
def test_undecodable_bodies_raise(body: bytes, ctype: str | None, encoding: str | None) -> None:
    """A body that does not match its declared type or encoding is undecodable."""
    with pytest.raises(UndecodableError):
        decode_body(body, ctype, encoding)


def test_attempts_header_is_read_defensively() -> None:
    """Missing or garbage x-attempts counts as zero."""
    assert attempts_of(None) == 0
    assert attempts_of({"x-attempts": 3}) == 3
    assert attempts_of({"x-attempts": "junk"}) == 0


# --- Outcomes ---------------------------------------------------------------------------------

POLICY = RetryPolicy(max_retries=2, initial_delay=1, multiplier=2, max_delay=60)


def test_return_acks() -> None:
    """A handler that returns gets its message acked."""
    assert decide(None, 0, POLICY) == Ack()


def test_retry_goes_to_a_delay_queue_with_its_delay() -> None:
    """Retry(delay) is a delayed retry, recorded as one more attempt, past max_retries too,
    its delay rounded up to the nearest step of the policy (1, 2, 4, ... 32, 60 here), capped
    at the largest."""
    assert decide(Retry(7), 5, POLICY) == RetryLater(8.0, 6, "retry requested")
    assert decide(Retry(8), 0, POLICY) == RetryLater(8.0, 1, "retry requested")
    assert decide(Retry(45), 0, POLICY).delay == 60.0  # type: ignore[union-attr]
    assert decide(Retry(3600), 0, POLICY).delay == 60.0  # type: ignore[union-attr]
    explicit = RetryPolicy(max_retries=5, delays=(1, 5, 30, 300))
    assert decide(Retry(6), 0, explicit).delay == 30.0  # type: ignore[union-attr]


def test_failures_wait_the_steps_in_turn_and_the_last_repeats() -> None:
    """The n-th failure waits the n-th step; with explicit delays the last one repeats."""
    explicit = RetryPolicy(max_retries=6, delays=(1, 5, 30))
    waits = [decide(ValueError("x"), n, explicit).delay for n in range(6)]  # type: ignore[union-attr]
    assert waits == [1.0, 5.0, 30.0, 30.0, 30.0, 30.0]
    assert [decide(ValueError("x"), n, POLICY).delay for n in range(2)] == [1.0, 2.0]  # type: ignore[union-attr]


def test_retry_policy_refuses_delays_out_of_order() -> None:
    """Steps must be positive and ascending (the n-th failure waits the n-th)."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(delays=(5, 1))
    with pytest.raises(ConfigurationError):
        RetryPolicy(delays=(0, 1))


def test_reject_dead_letters_at_once() -> None:
    """Reject dead-letters without retries, with its reason."""
    assert decide(Reject("bad address"), 0, POLICY) == DeadLetter("rejected", "bad address", 0)


def test_undecodable_dead_letters_at_once() -> None:
    """An undecodable body is never retried."""
    action = decide(UndecodableError("JSONDecodeError: x"), 0, POLICY)
    assert isinstance(action, DeadLetter) and action.reason == "undecodable"


def test_errors_retry_with_backoff_then_dead_letter_with_the_error() -> None:
    """Unhandled exceptions retry max_retries times with growing delays, then dead-letter."""
    error = ValueError("smtp down")
    assert decide(error, 0, POLICY) == RetryLater(1.0, 1, "ValueError: smtp down")
    assert decide(error, 1, POLICY) == RetryLater(2.0, 2, "ValueError: smtp down")
    assert decide(error, 2, POLICY) == DeadLetter("exhausted", "ValueError: smtp down", 3)


# --- Scheduling -------------------------------------------------------------------------------


def test_weighted_consumes_every_queue_at_its_prefetch() -> None:
    """Weighted mode ignores idleness."""
    assert effective_prefetch(Mode.WEIGHTED, [10, 2], [True, True]) == [10, 2]


def test_strict_pauses_lower_queues_while_a_higher_one_is_busy() -> None:
    """Strict: a queue is consumed only when every queue above it is idle."""
    assert effective_prefetch(Mode.STRICT, [10, 2], [False, False]) == [10, None]
    assert effective_prefetch(Mode.STRICT, [10, 2], [True, False]) == [10, 2]
    assert effective_prefetch(Mode.STRICT, [5, 3, 1], [True, False, False]) == [5, 3, None]


def test_conserving_lends_idle_capacity_to_the_next_busy_queue() -> None:
    """Conserving: an idle queue's prefetch is added to the next busy queue below it."""
    assert effective_prefetch(Mode.CONSERVING, [10, 2], [False, False]) == [10, 2]
    assert effective_prefetch(Mode.CONSERVING, [10, 2], [True, False]) == [10, 12]
    # the last queue is never idle: it always takes what is lent
    assert effective_prefetch(Mode.CONSERVING, [10, 2], [True, True]) == [10, 12]
    assert effective_prefetch(Mode.CONSERVING, [4, 3, 1], [True, False, True]) == [4, 7, 1]
    assert effective_prefetch(Mode.CONSERVING, [4, 3, 1], [True, True, False]) == [4, 3, 8]


def test_dispatcher_starts_in_arrival_order_across_queues_up_to_its_limit() -> None:
    """Deliveries from all queues are started in arrival order, at most `limit` at once."""
    d: Dispatcher[str] = Dispatcher(["high", "low"], limit=2)
    for queue, item in [("low", "l1"), ("high", "h1"), ("low", "l2")]:
        d.add(queue, item)
    assert [d.take_one(), d.take_one()] == [("low", "l1"), ("high", "h1")]
    assert d.take_one() is None  # no capacity left
    assert (d.running(), d.pending(), d.in_flight("low")) == (2, 1, 2)
    d.finish("low")
    assert d.take_one() == ("low", "l2")
    assert d.take_one() is None
    with pytest.raises(RuntimeError):
        d.finish("high") or d.finish("high")


def test_dispatcher_by_priority_prefers_the_first_queue() -> None:
    """Strict mode starts high-priority deliveries before earlier low ones."""
    d: Dispatcher[str] = Dispatcher(["high", "low"], limit=1, by_priority=True)
    d.add("low", "l1")
    d.add("high", "h1")
    assert d.take_one() == ("high", "h1")
    assert d.take_one() is None


def test_dispatcher_gives_back_unstarted_work() -> None:
    """take_pending removes the newest unstarted deliveries beyond `keep`; discard filters."""
    d: Dispatcher[str] = Dispatcher(["q"], limit=1)
    for item in ["a", "b", "c", "d"]:
        d.add("q", item)
    assert d.take_one() == ("q", "a")
    assert d.take_pending("q", keep=1) == ["d", "c"]
    assert d.discard(lambda item: item == "b") == ["b"]
    assert (d.pending("q"), d.running("q")) == (0, 1)


def simulate_share(prefetches: dict[str, int], concurrency: int, handled: int) -> Counter[str]:
    """A fake broker with a backlog on every queue that delivers up to each prefetch."""
    d: Dispatcher[str] = Dispatcher(list(prefetches), limit=concurrency)
    unacked = dict.fromkeys(prefetches, 0)
    running: deque[str] = deque()
    counts: Counter[str] = Counter()

    def refill() -> None:
        for q, p in prefetches.items():
            while unacked[q] < p:
                unacked[q] += 1
                d.add(q, q)

    refill()
    while sum(counts.values()) < handled:
        while (taken := d.take_one()) is not None:
            running.append(taken[0])
        q = running.popleft()  # handlers take equal time: the oldest finishes first
        d.finish(q)
        unacked[q] -= 1
        counts[q] += 1
        refill()
    return counts


@pytest.mark.parametrize(
    ("prefetches", "concurrency"),
    [
        ({"high": 10, "low": 2}, 12),
        ({"high": 10, "low": 2}, 4),
        ({"high": 20, "low": 5}, 25),
        ({"high": 1, "low": 1}, 2),
    ],
)
def test_weighted_share_follows_the_prefetches(
    prefetches: dict[str, int], concurrency: int
) -> None:
    """Under backlog, arrival-order dispatch shares work in proportion to the prefetches."""
    counts = simulate_share(prefetches, concurrency, 6000)
    expected = prefetches["high"] / prefetches["low"]
    assert counts["high"] / counts["low"] == pytest.approx(expected, rel=0.1)


# --- Confirms ---------------------------------------------------------------------------------


def test_confirm_tracker_handles_multiple_acks() -> None:
    """An ack with multiple=True settles every tag up to it, oldest first."""
    t: ConfirmTracker[str] = ConfirmTracker()
    for tag in (1, 2, 3, 4):
        t.add(tag, f"m{tag}")
    assert [e.item for e in t.settle(3, multiple=True)] == ["m1", "m2", "m3"]
    assert [e.item for e in t.settle(4, multiple=False)] == ["m4"]
    assert len(t) == 0


def test_confirm_tracker_marks_returns_before_the_ack() -> None:
    """basic.return arrives before the ack of the same message and marks only that one."""
    t: ConfirmTracker[str] = ConfirmTracker()
    t.add(1, "routed")
    t.add(2, "unroutable")
    t.returned(2, 312, "NO_ROUTE")
    entries = t.settle(2, multiple=True)
    assert [(e.item, e.returned) for e in entries] == [
        ("routed", None),
        ("unroutable", (312, "NO_ROUTE")),
    ]


def test_confirm_tracker_drain_and_remove() -> None:
    """Timeouts remove one tag; a closed channel drains all in order."""
    t: ConfirmTracker[str] = ConfirmTracker()
    for tag in (3, 1, 2):
        t.add(tag, f"m{tag}")
    assert t.remove(2) is not None and t.remove(2) is None
    assert [e.item for e in t.drain()] == ["m1", "m3"]


# --- Public API -------------------------------------------------------------------------------


def test_queue_spec_parsing_and_validation() -> None:
    """NAME=PREFETCH parses; empty names, bad numbers and prefetch 0 are refused."""
    assert Queue.parse("email.high=10") == Queue("email.high", 10)
    for bad in ("email.high", "=3", "q=x", "q=0"):
        with pytest.raises(ConfigurationError):
            Queue.parse(bad)


def test_worker_refuses_bad_configuration_without_connecting() -> None:
    """Unknown modes, duplicate queues and missing handlers fail at construction."""
    from priority_worker import Worker

    url = "amqp://guest:guest@127.0.0.1:1/"
    with pytest.raises(ConfigurationError):
        Worker(url, [Queue("a")], print, mode="fastest")
    with pytest.raises(ConfigurationError):
        Worker(url, [Queue("a"), Queue("a")], print)
    with pytest.raises(ConfigurationError):
        Worker(url, [Queue("a")])


def test_exported_names_are_pinned() -> None:
    """The public API is exactly __all__, and every public name has a docstring."""
    assert sorted(priority_worker.__all__) == sorted(
        [
            "ATTEMPTS_HEADER",
            "ERROR_HEADER",
            "ORIGINAL_QUEUE_HEADER",
            "ConfigurationError",
            "ConnectionFailed",
            "Handler",
            "Message",
            "Metrics",
            "Mode",
            "PriorityWorkerError",
            "Properties",
            "PublishConnectionLost",
            "PublishError",
            "PublishNacked",
            "PublishReturned",
            "PublishTimeout",
            "Publisher",
            "PublisherClosed",
            "Queue",
            "Reject",
            "Retry",
            "RetryPolicy",
            "Supervisor",
            "Worker",
        ]
    )
    for name in priority_worker.__all__:
        obj = getattr(priority_worker, name)
        if isinstance(obj, type):
            assert obj.__doc__, name
            for attr, value in vars(obj).items():
                if callable(value) and not attr.startswith("_"):
                    assert value.__doc__, f"{name}.{attr}"


def test_cli_exits_2_on_a_bad_queue_spec(capsys: pytest.CaptureFixture[str]) -> None:
    """The runner reports configuration errors with exit code 2 (a usage error from argparse,
    which checks --queue since issue 19), password-free."""
    from priority_worker._cli import main

    with pytest.raises(SystemExit) as stop:
        main(["run", "json:loads", "--url", "amqp://u:topsecret@127.0.0.1:1/", "--queue", "q=zero"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "prefetch is not a number" in err
    assert "topsecret" not in err


def test_cli_takes_the_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --url the runner reads $AMQP_URL (keeps the password out of `ps`)."""
    from priority_worker._cli import main

    monkeypatch.setenv("AMQP_URL", "amqp://u:envsecret@127.0.0.1:1/")
    with pytest.raises(SystemExit) as stop:  # a bad --queue: usage error from argparse
        main(["run", "json:loads", "--queue", "q=x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "NAME=PREFETCH" in err or "prefetch" in err
    monkeypatch.delenv("AMQP_URL")
    with pytest.raises(SystemExit):
        main(["run", "json:loads", "--queue", "q=1"])
