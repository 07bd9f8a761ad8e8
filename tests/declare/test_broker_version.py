"""Validation against the broker's version, with a fake version (no broker needed).

Pins: mirroring keys are errors on 4.0+, transient queues warn on 4.0-4.2 and fail on 4.3+,
x-queue-mode / queue_version 1 fail on 4.3+, a vhost's default_queue_type gives untyped
queues their type, the quorum delivery-limit default is shown, and the broker's error text is
made readable.
"""

from __future__ import annotations

import pytest

from declare_amqp import Topology, parse_unvalidated, plan
from declare_amqp._management import readable_reason
from declare_amqp._plan import CREATE, note_broker_defaults
from declare_amqp._validate import (
    check_broker_version,
    resolve_queue_types,
    validate,
)
from declare_amqp._versions import parse_version

MIRRORED = """
vhost: /
policies:
  - name: ha-all
    pattern: '.*'
    definition: {ha-mode: all, ha-sync-mode: automatic, message-ttl: 1000}
  - name: ttl
    pattern: '^x'
    definition: {message-ttl: 5}
"""

TRANSIENT = """
vhost: /
queues:
  - {name: scratch, durable: false}
  - {name: kept}
"""


def messages(problems: list[object]) -> list[str]:
    return [str(p) for p in problems]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4.0.5", (4, 0, 5)),
        ("3.10.8", (3, 10, 8)),
        ("4.1.0-rc.1", (4, 1, 0)),
        ("3.13.7+1.g0a1b2c3", (3, 13, 7)),
        ("?", ()),
        ("", ()),
    ],
)
def test_parse_version(text: str, expected: tuple[int, ...]) -> None:
    """Versions as the management API reports them, pre-releases and builds included."""
    assert parse_version(text) == expected


def test_mirroring_keys_are_errors_on_4_0_with_file_line_and_a_pointer_to_quorum() -> None:
    """ha-* keys name the removal, the version and quorum queues, at the policy's line."""
    desired = parse_unvalidated(MIRRORED, "t.yml")
    errors, warnings = check_broker_version(desired, "4.0.5")
    assert len(errors) == 1 and not warnings
    text = str(errors[0])
    assert text.startswith("t.yml:4: policy 'ha-all'")
    assert "ha-mode, ha-sync-mode" in text
    assert "removed in RabbitMQ 4.0" in text and "quorum" in text and "4.0.5" in text


def test_mirroring_keys_pass_on_3_x() -> None:
    """3.x still has classic mirroring: nothing to say."""
    assert check_broker_version(parse_unvalidated(MIRRORED, "t.yml"), "3.10.8") == ([], [])


def test_unknown_version_checks_nothing() -> None:
    """A broker that does not say its version is not guessed at."""
    assert check_broker_version(parse_unvalidated(MIRRORED, "t.yml"), "?") == ([], [])


@pytest.mark.parametrize(
    "version, errors, warnings",
    [
        ("3.13.7", 0, 0),
        ("4.0.5", 0, 1),
        ("4.2.1", 0, 1),
        ("4.3.0", 1, 0),
    ],
)
def test_transient_queue_warns_on_4_0_to_4_2_and_fails_on_4_3(
    version: str, errors: int, warnings: int
) -> None:
    """durable: false is deprecated from 4.0 and denied by default from 4.3 on."""
    found_errors, found_warnings = check_broker_version(
        parse_unvalidated(TRANSIENT, "t.yml"), version
    )
    assert (len(found_errors), len(found_warnings)) == (errors, warnings)
    for problem in (*found_errors, *found_warnings):
        assert str(problem).startswith("t.yml:4: queue 'scratch'")
        assert "transient" in str(problem) and version in str(problem)


def test_queue_mode_and_queue_version_1_fail_on_4_3_only() -> None:
    """Lazy mode and storage version 1 are refused by 4.3, as arguments and in policies."""
    desired = parse_unvalidated(
        """
vhost: /
queues:
  - {name: lazy, queue_mode: lazy}
  - {name: v1, queue_version: 1}
  - {name: v2, queue_version: 2}
policies:
  - {name: p, pattern: '.*', definition: {queue-mode: lazy, queue-version: 1}}
""",
        "t.yml",
    )
    assert check_broker_version(desired, "4.2.0") == ([], [])
    errors, _ = check_broker_version(desired, "4.3.0")
    text = messages(errors)
    assert len(text) == 4, text
    assert any(t.startswith("t.yml:4: queue 'lazy'") and "x-queue-mode" in t for t in text)
    assert any(t.startswith("t.yml:5: queue 'v1'") and "queue_version 1" in t for t in text)
    assert not any("'v2'" in t for t in text)
    assert sum(1 for t in text if t.startswith("t.yml:8: policy 'p'")) == 2


def test_max_priority_on_a_quorum_queue_mentions_quorum_priorities() -> None:
    """The error says 4.x quorum queues have message priorities of their own."""
    problems = validate(
        parse_unvalidated(
            """
vhost: /
queues:
  - {name: q, type: quorum, max_priority: 5}
""",
            "t.yml",
        )
    )
    assert len(problems) == 1
    assert "x-max-priority" in str(problems[0]) and "message priorities" in str(problems[0])


UNTYPED = """
vhost: v
queues:
  - {name: plain}
  - {name: transient, durable: false}
  - {name: auto, auto_delete: true}
  - {name: explicit, type: classic}
"""


def test_vhost_default_queue_type_gives_untyped_durable_queues_that_type() -> None:
    """As the broker does: durable untyped queues become quorum, transient, auto-delete and
    explicitly typed ones do not; nothing changes in a vhost without such a default."""
    desired = parse_unvalidated(UNTYPED, "t.yml")
    resolved, problems = resolve_queue_types(desired, {"v": "quorum"})
    assert problems == []
    assert {q.name: q.type for q in resolved.queues} == {
        "plain": "quorum",
        "transient": "classic",
        "auto": "classic",
        "explicit": "classic",
    }
    same, none = resolve_queue_types(desired, {"other": "quorum"})
    assert same is desired and none == []


def test_vhost_default_queue_type_matches_the_live_quorum_queue_without_a_conflict() -> None:
    """An untyped queue in a quorum-default vhost plans as a no-op against the quorum queue
    the broker made from it (and as a conflict without the default: it would be classic)."""
    desired = parse_unvalidated("vhost: v\nqueues:\n  - {name: plain}\n", "t.yml")
    live = parse_unvalidated("vhost: v\nqueues:\n  - {name: plain, type: quorum}\n", "live.yml")
    live = Topology(queues=live.queues)
    resolved, _ = resolve_queue_types(desired, {"v": "quorum"})
    assert plan(resolved, live).is_empty
    assert [c.action for c in plan(desired, live).changes] == ["conflict"]


def test_vhost_default_queue_type_revalidates_the_resolved_queue() -> None:
    """x-max-priority on a queue that the vhost's default makes quorum is refused, with the
    reason and the way out."""
    desired = parse_unvalidated("vhost: v\nqueues:\n  - {name: prio, max_priority: 5}\n", "t.yml")
    _, problems = resolve_queue_types(desired, {"v": "quorum"})
    assert len(problems) == 1
    text = str(problems[0])
    assert text.startswith("t.yml:3: queue 'prio'")
    assert "default_queue_type" in text and "type: classic" in text


def test_quorum_create_shows_the_4_0_default_delivery_limit() -> None:
    """On 4.0+ the plan says a new quorum queue gets delivery limit 20 unless it sets one or
    its policy does; on 3.x nothing is said."""
    desired = parse_unvalidated(
        """
vhost: /
queues:
  - {name: q.default, type: quorum}
  - {name: q.own, type: quorum, delivery_limit: 5}
  - {name: p.q, type: quorum}
  - {name: c, type: classic}
policies:
  - {name: dl, pattern: '^p\\.', apply_to: quorum_queues, definition: {delivery-limit: 7}}
""",
        "t.yml",
    )
    base = plan(desired, Topology())
    assert note_broker_defaults(base, (3, 13, 7), desired.policies) is base
    noted = note_broker_defaults(base, (4, 0, 5), desired.policies)
    by_name = {c.name: c.message for c in noted.changes if c.action == CREATE}
    assert "delivery limit 20" in by_name["q.default"]
    assert by_name["q.own"] == ""
    assert by_name["p.q"] == "delivery limit 7 (from policy 'dl')"
    assert by_name["c"] == ""


def test_broker_error_text_is_made_readable() -> None:
    """HTML entities decoded, Erlang binaries shown as strings, blank lines folded."""
    raw = (
        'Validation failed\n\n[{&lt;&lt;"ha-mode"&gt;&gt;,&lt;&lt;"all"&gt;&gt;}] are not '
        "recognised policy settings\n"
    )
    assert readable_reason(raw) == (
        'Validation failed: [{"ha-mode","all"}] are not recognised policy settings'
    )
    assert readable_reason("vhost_not_found") == "vhost_not_found"
