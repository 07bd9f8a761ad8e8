"""The consumers section and priority_worker's own queues, without a broker.

Pins: the section loads and validates with file:line (every problem at once); declare-amqp
derives the worker's delay and dead-letter queues by the one shared rule; prune keeps queues
the worker made (by name *and* arguments) and says so; export leaves them out; the worker's
RetryPolicy uses the same steps and names.
"""

from __future__ import annotations

import textwrap

import pytest

from declare_amqp import Topology, TopologyError, load, parse_unvalidated, plan
from declare_amqp._broker_json import from_definitions
from declare_amqp._export import to_yaml
from declare_amqp.worker_queues import (
    delay_queue_arguments,
    delay_queue_name,
    made_by_worker,
    retry_steps,
    round_up_to_step,
)
from priority_worker import RetryPolicy

CONSUMER = """\
vhost: /
exchanges:
  - {name: email.dlx, type: fanout}
queues:
  - name: email.high
  - name: email.default
consumers:
  - name: email-sender
    queues:                       # priority order
      - {queue: email.high, prefetch: 10}
      - {queue: email.default, prefetch: 2}
    mode: weighted
    concurrency: 4
    retry: {max_retries: 5, delays: [1, 5, 30, 300]}   # seconds, one delay queue per step
    dead_letter_exchange: email.dlx
"""


def load_text(tmp_path: object, text: str, name: str = "t.yml") -> Topology:
    path = tmp_path / name  # type: ignore[operator]
    path.write_text(textwrap.dedent(text))
    return load([str(path)])


def test_the_issue_shape_loads_as_written(tmp_path: object) -> None:
    """The consumers shape of the README loads into one consumer with every setting."""
    t = load_text(tmp_path, CONSUMER)
    (c,) = t.consumers
    assert (c.name, c.vhost, c.mode, c.concurrency, c.max_retries) == (
        "email-sender",
        "/",
        "weighted",
        4,
        5,
    )
    assert [(q.queue, q.prefetch) for q in c.queues] == [("email.high", 10), ("email.default", 2)]
    assert c.delays == (1.0, 5.0, 30.0, 300.0) and c.dead_letter_exchange == "email.dlx"
    assert str(c.location) == f"{tmp_path}/t.yml:8"


def test_delay_queues_are_derived_per_step_and_queue(tmp_path: object) -> None:
    """Four steps x two queues = eight delay queues with the worker's arguments, located at
    the consumer; no .dead queues (a dead-letter exchange is set)."""
    t = load_text(tmp_path, CONSUMER)
    derived = {q.name: q for q in t.queues if q.origin}
    assert sorted(derived) == sorted(
        f"{q}.delay.{ms}"
        for q in ("email.high", "email.default")
        for ms in (1000, 5000, 30000, 300000)
    )
    q = derived["email.high.delay.30000"]
    assert dict(q.arguments) == {
        "x-message-ttl": 30000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "email.high",
    }
    assert q.durable and q.type == "classic" and str(q.location).endswith("t.yml:8")
    assert "consumer 'email-sender'" in q.origin


def test_without_a_dead_letter_exchange_the_dead_queues_are_derived(tmp_path: object) -> None:
    """The worker dead-letters to Q.dead without an exchange: those are derived too."""
    text = CONSUMER.replace("    dead_letter_exchange: email.dlx\n", "")
    names = {q.name for q in load_text(tmp_path, text).queues if q.origin}
    assert {"email.high.dead", "email.default.dead"} <= names


def test_a_file_declaring_a_derived_queue_otherwise_is_an_error(tmp_path: object) -> None:
    """The worker would use it as its own: same name, other arguments -> file:line error."""
    text = CONSUMER.replace(
        "  - name: email.default\n",
        "  - name: email.default\n  - name: email.high.delay.5000\n    message_ttl: 10\n",
    )
    with pytest.raises(TopologyError) as err:
        load_text(tmp_path, text)
    assert "t.yml:10: consumer 'email-sender'" in str(err.value)  # 2 lines inserted above
    assert "email.high.delay.5000" in str(err.value)


def test_bad_consumers_are_reported_all_at_once_with_file_line(tmp_path: object) -> None:
    """Unknown mode, prefetch out of range, a queue listed twice, delays out of order,
    concurrency 0: each with its line."""
    text = """\
    vhost: /
    queues: [{name: a}, {name: b}]
    consumers:
      - name: one
        queues:
          - {queue: a, prefetch: 0}
          - {queue: b, prefetch: 2}
          - {queue: b, prefetch: 3}
        mode: fastest
        concurrency: 0
        retry: {delays: [30, 5]}
    """
    with pytest.raises(TopologyError) as err:
        load_text(tmp_path, text)
    text_err = str(err.value)
    for line, words in (
        (6, "'prefetch' must be at least 1"),
        (9, "'mode' must be one of"),
        (10, "'concurrency' must be at least 1"),
        (11, "ascending"),
        (8, "queue 'b' is listed twice"),
    ):
        assert f"t.yml:{line}:" in text_err and words in text_err, (line, words, text_err)


def test_plan_creates_derived_queues_marked_as_derived(tmp_path: object) -> None:
    """A plan against an empty broker creates them, each change saying where it comes from."""
    t = load_text(tmp_path, CONSUMER)
    creates = {c.name: c for c in plan(t, Topology()).changes if c.kind == "queue"}
    assert creates["email.high.delay.1000"].message.startswith("derived: retry delay 1 s")


@pytest.mark.parametrize(
    "arguments, owner",
    [
        (delay_queue_arguments("work", 30), "work"),
        ({**delay_queue_arguments("work", 30), "x-expires": 150000}, "work"),  # workers < 0.3
        ({**delay_queue_arguments("work", 30), "x-queue-type": "classic"}, "work"),  # 4.x echo
        ({**delay_queue_arguments("work", 30), "x-message-ttl": 5}, None),
        ({"x-message-ttl": 30000}, None),
    ],
)
def test_worker_queues_are_recognised_by_name_and_arguments(
    arguments: dict[str, object], owner: str | None
) -> None:
    """Only a queue with the worker's name *and* arguments is the worker's."""
    assert made_by_worker("work.delay.30000", arguments, {"work"}) == owner
    assert made_by_worker("work.delay.30000", arguments, {"other"}) is None
    assert made_by_worker("work.dead", {}, {"work"}) == "work"
    assert made_by_worker("work.dead", {"x-max-length": 1}, {"work"}) is None


def live(*queues: dict[str, object]) -> Topology:
    return from_definitions("/", {"queues": list(queues)})


def test_prune_keeps_worker_queues_and_says_so() -> None:
    """Without a consumers section, prune spares Q.delay.N and Q.dead of a declared queue,
    even with messages in them, and lists them as kept (the plan is still empty)."""
    desired = parse_unvalidated("vhost: /\nqueues:\n  - name: work\n", "t.yml")
    actual = live(
        {"name": "work", "durable": True, "arguments": {}},
        {
            "name": "work.delay.30000",
            "durable": True,
            "arguments": {**delay_queue_arguments("work", 30), "x-expires": 150000},
        },
        {"name": "work.dead", "durable": True, "arguments": {}},
        {"name": "stray", "durable": True, "arguments": {}},
    )
    result = plan(desired, actual, prune=True)
    assert [(c.action, c.name) for c in result.changes] == [("delete", "stray")]
    assert {c.name: c.message for c in result.kept} == {
        "work.delay.30000": "kept: made by priority_worker for work",
        "work.dead": "kept: made by priority_worker for work",
    }
    assert result.to_dict()["kept"][0]["action"] == "keep"


def test_derived_queue_matches_a_legacy_worker_queue_without_a_conflict(tmp_path: object) -> None:
    """A delay queue made by an older worker (x-expires = TTL + 120 s) is the derived one."""
    t = load_text(tmp_path, CONSUMER)
    actual_queues = [
        {"name": q.name, "durable": True, "arguments": dict(q.arguments)}
        for q in t.queues
        if not q.origin
    ]
    actual_queues += [
        {
            "name": q.name,
            "durable": True,
            "arguments": {**q.arguments, "x-expires": q.arguments["x-message-ttl"] + 120_000},
        }
        for q in t.queues
        if q.origin
    ]
    result = plan(t, live(*actual_queues))
    assert [c.kind for c in result.changes] == ["exchange"], result.changes


def test_export_leaves_worker_queues_out_and_names_them() -> None:
    """Export writes the queue, lists its delay queue in a comment, and does not export it."""
    actual = live(
        {"name": "work", "durable": True, "arguments": {}},
        {"name": "work.delay.1000", "durable": True, "arguments": delay_queue_arguments("work", 1)},
    )
    text = to_yaml(actual, ["/"])
    assert "#   work.delay.1000 (for work, vhost /)" in text
    assert "name: work.delay.1000" not in text and "name: work\n" in text


def test_the_worker_uses_the_same_steps_and_names() -> None:
    """RetryPolicy's steps and delay-queue names come from the shared rule: a Retry(7) with
    the consumer's delays waits 30 s, in the queue declare-amqp derived."""
    policy = RetryPolicy(max_retries=5, delays=(1, 5, 30, 300))
    assert policy.steps == retry_steps(delays=[1, 5, 30, 300]) == (1.0, 5.0, 30.0, 300.0)
    assert policy.round_up(7) == 30.0 == round_up_to_step(7, policy.steps)
    assert delay_queue_name("email.high", policy.round_up(7)) == "email.high.delay.30000"
    assert RetryPolicy().steps == (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0)
