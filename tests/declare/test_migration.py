"""The pure part of queue migrations (``_migration``) and ``convert --to quorum``.

``step_of`` reads a migration's step from the broker's queues and bindings alone; these
tests pin each step of the table in ``_migration``'s docstring, and that the plan turns a
conflict into a migration only when asked, keeps a holding queue under prune, and shows a
migration in progress without being asked.
"""

from __future__ import annotations

from declare_amqp._convert import to_quorum
from declare_amqp._migration import (
    Record,
    choose_mover,
    comparable,
    holding_queue,
    holding_queue_name,
    plan_migrations,
    shape,
    step_of,
    with_mover,
)
from declare_amqp._model import BindingSpec, QueueSpec, Topology
from declare_amqp._plan import QueueStats
from declare_amqp._planning import plan

OLD = QueueSpec("v", "q")
NEW = QueueSpec("v", "q", type="quorum")
HOLD = holding_queue_name("q")
RECORD = Record("q", shape(OLD), shape(NEW), (("x", "k", {}),))


def _bound(*destinations: str) -> list[BindingSpec]:
    return [BindingSpec("v", "x", d, "queue", "k") for d in destinations]


def test_step_of_reads_every_step_from_the_broker() -> None:
    assert step_of(RECORD, OLD, _bound("q")) == "divert"
    assert step_of(RECORD, OLD, _bound("q", HOLD)) == "divert"
    assert step_of(RECORD, OLD, _bound(HOLD)) == "drain"
    assert step_of(RECORD, None, _bound(HOLD)) == "swap"
    assert step_of(RECORD, NEW, _bound(HOLD)) == "restore"
    assert step_of(RECORD, NEW, _bound("q", HOLD)) == "restore"
    assert step_of(RECORD, NEW, _bound("q")) == "fill"


def test_the_record_round_trips_through_the_holding_queue_argument() -> None:
    hold = holding_queue("v", RECORD)
    assert hold.name == HOLD and hold.durable
    text = hold.arguments["x-declare-amqp-migration"]
    assert Record.from_argument(text) == RECORD
    assert RECORD.target("v") == NEW


def test_long_names_get_a_digest() -> None:
    name = "q" * 250
    assert len(holding_queue_name(name).encode()) <= 255
    assert holding_queue_name(name) != holding_queue_name(name + "x")


def _conflict_plan(desired: QueueSpec) -> tuple[Topology, Topology]:
    actual = Topology(queues=(OLD,), bindings=tuple(_bound("q")))
    return Topology(queues=(desired,), bindings=tuple(_bound("q"))), actual


def test_a_conflict_becomes_a_migration_only_when_asked() -> None:
    desired, actual = _conflict_plan(NEW)
    p = plan(desired, actual)
    assert [c.action.value for c in plan_migrations(p, actual, {}).changes] == ["conflict"]
    migrated = plan_migrations(p, actual, {("v", "q"): QueueStats(7, 1)}, migrate=True)
    (change,) = migrated.changes
    assert change.action.value == "migrate"
    assert migrated.summary()["migrate"] == 1 and not migrated.conflicts
    m = change.migration
    assert m is not None
    assert m["messages"] == 7 and m["consumers"] == 1
    assert m["changes"] == {"type": {"before": "classic", "after": "quorum"}}
    assert any("basic.cancel" in text for text in m["limits"])
    marked = QueueSpec("v", "q", type="quorum", migrate=True)
    desired, actual = _conflict_plan(marked)
    assert plan_migrations(plan(desired, actual), actual, {}).migrations


def test_a_migration_in_progress_shows_and_prune_keeps_its_holding_queue() -> None:
    hold = holding_queue("v", RECORD)
    actual = Topology(queues=(OLD, hold), bindings=tuple(_bound(HOLD)))
    desired = Topology(queues=(NEW,), bindings=tuple(_bound("q")))
    p = plan_migrations(plan(desired, actual, prune=True, force=True), actual, {})
    (change,) = p.changes
    assert change.action.value == "migrate"
    assert change.message == "migration in progress: step drain"
    assert [k.name for k in p.kept] == [HOLD]
    # Swap interrupted: no queue at all; the migration declares it, not a create.
    actual = Topology(queues=(hold,), bindings=tuple(_bound(HOLD)))
    p = plan_migrations(plan(desired, actual), actual, {})
    assert [(c.action.value, c.message) for c in p.changes] == [
        ("migrate", "migration in progress: step swap")
    ]


def test_saved_plans_compare_without_the_counts() -> None:
    desired, actual = _conflict_plan(NEW)
    p = plan(desired, actual)
    one = plan_migrations(p, actual, {("v", "q"): QueueStats(1, 0)}, migrate=True).to_dict()
    two = plan_migrations(p, actual, {("v", "q"): QueueStats(9, 2)}, migrate=True).to_dict()
    assert one != two and comparable(one) == comparable(two)


def test_convert_to_quorum_lists_every_change_with_its_line() -> None:
    text = (
        "queues:\n"
        "  - name: a\n"
        "    max_priority: 5\n"
        "    arguments:\n"
        "      x-queue-master-locator: min-masters\n"
        "  - name: s\n"
        "    type: stream\n"
        "policies:\n"
        "  - name: ha\n"
        "    pattern: .*\n"
        "    definition:\n"
        "      ha-mode: all\n"
    )
    out, changes = to_quorum(text, "t.yml")
    shown = [str(c) for c in changes]
    assert shown[0].startswith("t.yml:2: queue 'a': type classic -> quorum")
    assert any(s.startswith("t.yml:3: queue 'a': max_priority removed") for s in shown)
    assert any("x-queue-leader-locator: balanced" in s and s.startswith("t.yml:5") for s in shown)
    assert any(s.startswith("t.yml:12: policy 'ha': ha-mode removed") for s in shown)
    assert "type: quorum" in out and "max_priority" not in out and "ha-mode" not in out
    assert "type: stream" in out  # other types are left alone
    assert not any("queue 's'" in s for s in shown)


def test_progress_lines_when_not_on_a_terminal(monkeypatch: object) -> None:
    """Off a terminal, a line per interval per queue: moved, rate, left."""
    import io

    import pytest

    from declare_amqp import _move_progress

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(_move_progress, "LINE_INTERVAL", 0.0)
    out = io.StringIO()
    with _move_progress.progress_reporter(None, out) as moved:
        moved("q", 10, 90)
        moved("q", 50, 50)
    lines = out.getvalue().splitlines()
    assert lines and all(line.startswith("moving q: ") for line in lines)
    assert lines[-1].endswith("50 left") and " 50 moved, " in lines[-1]
    assert "msg/s" in lines[-1]


def test_a_migration_report_names_its_duplicates_as_this_runs_upper_bound() -> None:
    """The two kinds the run can see add up to ``duplicates_at_most``; JSON splits them and
    the line says whose bound it is."""
    from declare_amqp._migrate import MigrationReport
    from declare_amqp._migration import migration_line

    report = MigrationReport("v", "q", "hold", moved_out=10, moved_back=12)
    report.overlap_at_most, report.resent_at_most = 3, 4
    report.move_spans.append((0.25, 1.5))
    doc = report.to_dict()
    assert doc["duplicates_at_most"] == 7
    assert doc["duplicates_from"] == {"bindings_overlap_at_most": 3, "resent_at_most": 4}
    assert doc["move_spans"] == [[0.25, 1.5]]
    line = migration_line(report)
    assert "at most 7 duplicates made by this run (3 while bindings overlapped, 4 moved again)" in (
        line
    )


def test_the_default_mover_is_the_shovel_where_the_plugin_runs() -> None:
    """``auto``: the broker's shovel with the plugin, the tool's own mover without; an explicit
    mover stays as asked (apply refuses ``shovel`` without the plugin, before any write)."""
    assert choose_mover("auto", shovels_enabled=True) == "shovel"
    assert choose_mover("auto", shovels_enabled=False) == "amqp"
    assert choose_mover("amqp", shovels_enabled=True) == "amqp"
    assert choose_mover("shovel", shovels_enabled=False) == "shovel"


def test_the_plan_says_which_mover_moves_each_migration() -> None:
    """Every migrate change names its mover (JSON ``mover``, a line of text); other changes
    are left as they are; a shovel the broker cannot run is said so."""
    desired = Topology(queues=(NEW, QueueSpec("v", "other")))
    actual = Topology(queues=(OLD,))
    migrated = plan_migrations(plan(desired, actual), actual, {}, migrate=True)
    shown = with_mover(migrated, "shovel", shovels_enabled=False)
    (change,) = shown.migrations
    assert change.migration is not None and change.migration["mover"] == "shovel"
    assert "apply refuses" in change.migration["mover_text"]
    assert [c for c in shown.changes if c.action != "migrate"] == [
        c for c in migrated.changes if c.action != "migrate"
    ]
    own = with_mover(migrated, "amqp", shovels_enabled=False).migrations[0].migration
    assert (
        own is not None and own["mover_text"] == "the tool's own confirmed consumer and publisher"
    )
