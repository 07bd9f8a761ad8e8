"""One rule for "does this value fit this key" (issue 11, part 2), shared by the loader, the
validator and the exporter; it follows what RabbitMQ 3.10.8 accepts on a declare (measured:
``x-max-priority`` 300 and ``x-max-age: 7days`` are refused with 406 / HTTP 400, while
``x-delivery-limit: -1``, ``x-stream-max-segment-size-bytes: 0`` and ``x-overflow:
reject-publish-dlx`` on a quorum queue are accepted)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import declare_amqp as da
from declare_amqp._export import to_document
from declare_amqp._fit import argument_problem, fit_warnings
from declare_amqp._model import QueueSpec, Topology


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("x-delivery-limit", -1),
        ("x-stream-max-segment-size-bytes", 0),
        ("x-max-priority", 0),
        ("x-max-priority", 255),
        ("x-message-ttl", 315_360_000_000),
        ("x-max-age", "7D"),
        ("x-owner", {"any": ["thing"]}),
    ],
)
def test_values_the_broker_accepts_fit(argument: str, value: object) -> None:
    assert argument_problem(argument, value) is None


@pytest.mark.parametrize(
    ("argument", "value", "why"),
    [
        ("x-max-priority", 300, "at most 255"),
        ("x-max-age", "7days", "expected form"),
        ("x-message-ttl", 315_360_000_001, "at most"),
        ("x-expires", 0, "at least 1"),
        ("x-max-priority", "5", "whole number"),
        ("x-single-active-consumer", 1, "true or false"),
        ("x-max-length", True, "whole number"),
    ],
)
def test_values_the_broker_refuses_do_not_fit(argument: str, value: object, why: str) -> None:
    problem = argument_problem(argument, value)
    assert problem is not None and why in problem


@pytest.mark.parametrize("where", ["alias", "arguments"])
def test_loader_and_validator_agree(where: str) -> None:
    """The same value is accepted (or refused) whether written as alias or raw argument."""
    for value, ok in ((-1, True), ("x", False)):
        text = (
            f"queues: [{{name: q, type: quorum, delivery_limit: {value}}}]"
            if where == "alias"
            else f"queues: [{{name: q, type: quorum, arguments: {{x-delivery-limit: {value}}}}}]"
        )
        try:
            topology = da.parse_unvalidated(text, "t.yml")
            problems = da.validate(topology)
        except da.TopologyError as exc:
            problems = list(exc.problems)
        assert (problems == []) == ok, (where, value, problems)


def test_exporter_writes_aliases_for_every_value_that_fits() -> None:
    """A broker-held value at the edge of the range is exported with its alias and loads."""
    held = Topology(
        queues=(
            QueueSpec(
                "/",
                "q",
                "quorum",
                arguments={"x-delivery-limit": -1, "x-overflow": "reject-publish-dlx"},
            ),
            QueueSpec("/", "s", "stream", arguments={"x-stream-max-segment-size-bytes": 0}),
        )
    )
    doc = to_document(held, ["/"])
    assert doc["queues"][0]["delivery_limit"] == -1
    assert doc["queues"][1]["stream_max_segment_size_bytes"] == 0
    loaded = da.parse_unvalidated(yaml.safe_dump(doc), "export.yml")
    assert da.validate(loaded) == []
    assert da.plan(loaded, held).is_empty


def test_accepted_but_not_honoured_values_are_warnings() -> None:
    """reject-publish-dlx on a quorum queue, and an exchange that is its own alternate:
    the broker takes both, so they load with a warning instead of an error."""
    t = da.parse_unvalidated(
        "exchanges: [{name: e, type: fanout, alternate_exchange: e}]\n"
        "queues: [{name: q, type: quorum, overflow: reject-publish-dlx}]\n",
        "t.yml",
    )
    assert da.validate(t) == []
    warnings = [str(w) for w in fit_warnings(t)]
    assert len(warnings) == 2
    assert warnings[0].startswith("t.yml:1: exchange 'e'") and "own alternate" in warnings[0]
    assert warnings[1].startswith("t.yml:2: queue 'q'") and "reject-publish-dlx" in warnings[1]


@pytest.mark.parametrize(
    ("definition", "why"),
    [
        ({"max-length": -1}, "at least 0"),
        ({"delivery-limit": -1}, "at least 0"),
        ({"max-age": "7days"}, "expected form"),
        ({"message-ttl": "5"}, "whole number"),
        ({"overflow": "foo"}, "one of"),
        ({"dead-letter-exchange": 5}, "a string"),
    ],
)
def test_policy_values_the_broker_refuses_are_input_errors(
    tmp_path: Path, definition: dict[str, object], why: str
) -> None:
    """The broker refuses these policy values (HTTP 400, measured on 3.10.8): loading
    fails before anything is written, instead of an apply that stops half-way."""
    path = tmp_path / "t.yml"
    path.write_text(
        "policies:\n  - name: p\n    pattern: '.*'\n    definition: "
        + yaml.safe_dump(definition, default_flow_style=True)
    )
    with pytest.raises(da.TopologyError) as info:
        da.load([str(path)])
    (problem,) = info.value.problems
    assert str(problem).startswith(f"{path}:2: policy 'p'") and why in problem.message
