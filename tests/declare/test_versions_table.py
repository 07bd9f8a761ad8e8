"""The one table of version edges (declare_amqp._versions), no broker needed.

Pins: every row is cited and advises; a row holds exactly in its range of releases (ADDED rows
before theirs); the version checks of validate/plan read the table (x-consumer-timeout on a
classic queue: a warning on 4.3.0-4.3.1, an error from 4.3.2; x-queue-master-locator denied on
4.3); convert's rewrites for quorum queues say why, by target version.
"""

from __future__ import annotations

import pytest

from declare_amqp import parse_unvalidated
from declare_amqp._validate import check_broker_version
from declare_amqp._versions import (
    ADDED_EDGES,
    EDGES,
    QUORUM_REWRITES,
    Effect,
    Rewrite,
    Subject,
    added_in,
    edge,
    edges_at,
    quorum_rewrite,
)


def test_every_row_is_cited_and_says_what_to_do() -> None:
    """A row without its source or advice cannot be checked or acted on."""
    for row in (*EDGES, *ADDED_EDGES):
        assert row.source and row.advice and row.what, row.key
        assert row.names, row.key
        if row.until is not None:
            assert row.until > row.since, row.key
    for rewrite in QUORUM_REWRITES:
        assert rewrite.reason, rewrite.name
        if rewrite.edge is not None:
            assert any(e.key == rewrite.edge for e in EDGES), rewrite.edge


@pytest.mark.parametrize(
    "version, holds",
    [
        ((4, 2, 5), False),
        ((4, 2, 6), True),
        ((4, 2, 7), False),
        ((4, 3, 0), True),
        ((4, 3, 1), False),
        ((), False),
    ],
)
def test_a_fixed_regression_holds_only_in_its_patch_releases(
    version: tuple[int, ...], holds: bool
) -> None:
    """Passive declares needed configure only on 4.2.6 and 4.3.0 (rabbitmq-server #16272)."""
    assert (edge("passive-declare-configure", Subject.PERMISSION, version) is not None) is holds


def test_added_rows_hold_before_their_release_and_unknown_versions_match_nothing() -> None:
    """An ADDED row is a refusal on older brokers; an unknown version is never guessed."""
    (row,) = [e for e in ADDED_EDGES if e.key == "no-delivery-limit"]
    assert row.effect is Effect.ADDED and row.effect.blocks
    assert row.holds_at((3, 13, 7)) and not row.holds_at((4, 0, 0))
    assert not row.holds_at(())
    assert added_in("queue-type-apply-to") == (3, 12)
    with pytest.raises(KeyError):
        added_in("no-such-row")
    assert edges_at(()) == ()


def test_rows_match_only_their_value_and_queue_type() -> None:
    """x-queue-version 1 (not 2, not '1'); x-consumer-timeout on classic queues only."""
    (v1,) = [e for e in EDGES if e.key == "queue-version-1" and e.subject is Subject.QUEUE_ARGUMENT]
    assert v1.queue_hits("classic", True, {"x-queue-version": 1}) == ("x-queue-version",)
    assert v1.queue_hits("classic", True, {"x-queue-version": 2}) == ()
    assert v1.queue_hits("classic", True, {"x-queue-version": "1"}) == ()
    timeout = edge("classic-consumer-timeout", Subject.QUEUE_ARGUMENT, (4, 3, 2))
    assert timeout is not None
    assert timeout.queue_hits("classic", True, {"x-consumer-timeout": 60000}) == (
        "x-consumer-timeout",
    )
    assert timeout.queue_hits("quorum", True, {"x-consumer-timeout": 60000}) == ()


CONSUMER_TIMEOUT = """
vhost: /
queues:
  - {name: classic, arguments: {x-consumer-timeout: 60000}}
  - {name: quorum, type: quorum, arguments: {x-consumer-timeout: 60000}}
  - {name: located, arguments: {x-queue-master-locator: min-masters}}
"""


@pytest.mark.parametrize(
    "version, errors, warnings",
    [
        ("4.2.9", [], []),
        ("4.3.0", ["located"], ["classic"]),
        ("4.3.1", ["located"], ["classic"]),
        ("4.3.2", ["classic", "located"], []),
    ],
)
def test_version_checks_read_the_table(
    version: str, errors: list[str], warnings: list[str]
) -> None:
    """Ignored on 4.3.0-4.3.1 is a warning, refused from 4.3.2 an error; the quorum queue's
    timeout is fine; x-queue-master-locator is denied by default from 4.3, with the way out."""
    found_errors, found_warnings = check_broker_version(
        parse_unvalidated(CONSUMER_TIMEOUT, "t.yml"), version
    )

    def names(problems: list[object]) -> list[str]:
        return sorted(str(p).split("'")[1] for p in problems)

    assert names(found_errors) == errors
    assert names(found_warnings) == warnings
    for problem in (*found_errors, *found_warnings):
        assert version in str(problem)
    located = [str(p) for p in found_errors if "'located'" in str(p)]
    assert all("x-queue-leader-locator" in text for text in located)


def test_quorum_rewrites_say_why_for_the_target_version() -> None:
    """x-max-priority is dropped: 4.x quorum queues have priorities, 3.x ones none; the master
    locator becomes the leader locator with its value mapped; reject-publish-dlx becomes
    reject-publish; a transient queue becomes durable; unknown settings are kept."""
    priority = quorum_rewrite(Subject.QUEUE_ARGUMENT, "x-max-priority", 10)
    assert priority is not None and priority.rewrite is Rewrite.DROP
    assert "two priority levels" in priority.reason_at((4, 0, 5))
    assert "publish order" in priority.reason_at((3, 13, 7))
    locator = quorum_rewrite(Subject.QUEUE_ARGUMENT, "x-queue-master-locator", "min-masters")
    assert locator is not None and locator.rewrite is Rewrite.RENAME
    assert (locator.to, locator.values["min-masters"]) == ("x-queue-leader-locator", "balanced")
    overflow = quorum_rewrite(Subject.QUEUE_ARGUMENT, "x-overflow", "reject-publish-dlx")
    assert overflow is not None and overflow.values["reject-publish-dlx"] == "reject-publish"
    assert quorum_rewrite(Subject.QUEUE_ARGUMENT, "x-overflow", "drop-head") is None
    durable = quorum_rewrite(Subject.QUEUE, "durable", False)
    assert durable is not None and durable.values[False] is True
    assert quorum_rewrite(Subject.QUEUE, "durable", True) is None
    assert quorum_rewrite(Subject.POLICY_KEY, "ha-mode", "all") is not None
    assert quorum_rewrite(Subject.QUEUE_ARGUMENT, "x-owner", "billing") is None
