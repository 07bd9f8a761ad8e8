"""Warnings for references the broker accepts (issue 11, part 1), without a broker."""

from __future__ import annotations

import pytest

import declare_amqp as da
from declare_amqp._warnings import plan_warnings, reference_warnings, strict

FILE = """
exchanges:
  - {name: a, type: topic, alternate_exchange: missing-ae}
  - {name: b, type: topic, alternate_exchange: amq.fanout}
  - {name: c, type: topic, alternate_exchange: on-broker}
queues:
  - {name: q1, dead_letter_exchange: missing-dlx}
  - {name: q2, dead_letter_exchange: a}
  - {name: q3, dead_letter_exchange: ""}
policies:
  - {name: p, pattern: '.*', definition: {dead-letter-exchange: gone, message-ttl: 5}}
"""


def test_only_exchanges_that_exist_nowhere_are_warned_about() -> None:
    """Declared in the files, built in (amq.*, the default exchange ""), or on the broker:
    no warning. Missing: one warning each, at the object's line, saying what is lost."""
    desired = da.parse_unvalidated(FILE, "t.yml")
    actual = da.Topology(exchanges=(da.ExchangeSpec("/", "on-broker", "fanout"),))
    found = [str(w) for w in reference_warnings(desired, actual)]
    assert found == [
        "t.yml:3: exchange 'a' (vhost /): alternate exchange 'missing-ae' is declared in no "
        "file and does not exist on the broker: RabbitMQ accepts this, but messages that no "
        "binding routes are dropped until that exchange exists",
        "t.yml:7: queue 'q1' (vhost /): dead-letter exchange 'missing-dlx' is declared in no "
        "file and does not exist on the broker: RabbitMQ accepts this, but rejected, expired "
        "and overflowing messages are lost until that exchange exists",
        "t.yml:11: policy 'p' (vhost /): dead-letter-exchange 'gone' is declared in no file "
        "and does not exist on the broker: RabbitMQ accepts this, but rejected, expired and "
        "overflowing messages are lost until that exchange exists",
    ]


def test_strict_turns_warnings_into_one_topology_error() -> None:
    desired = da.parse_unvalidated(FILE, "t.yml")
    warnings = plan_warnings(desired, da.Topology())
    assert len(warnings) == 4  # c's alternate exchange is missing too without the broker
    with pytest.raises(da.TopologyError) as info:
        strict(warnings)
    assert len(info.value.problems) == 4
    assert all("(an error with --strict)" in p.message for p in info.value.problems)
    strict([])  # nothing to refuse: returns


def test_a_missing_alternate_exchange_is_no_error_any_more() -> None:
    """check_references (errors) no longer lists them; bindings still are errors."""
    desired = da.parse_unvalidated(
        FILE + "bindings: [{source: nowhere, destination: q1}]\n", "t.yml"
    )
    errors = [
        str(p) for p in da.check_references(desired, da.Topology(vhosts=(da.VhostSpec("/"),)))
    ]
    assert len(errors) == 1 and "source exchange 'nowhere'" in errors[0], errors
