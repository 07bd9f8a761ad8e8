"""Hostile files through ``apply`` on a live broker: exit 1, a one-paragraph message naming
file and line, and the test vhost left exactly as it was (each file also declares a valid
queue, which must not appear)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hostile_inputs import FINE, HOSTILE


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_applies_nothing(declare: Any, case: str) -> None:
    data, line, words = HOSTILE[case]
    (declare.workdir / "bad.yml").write_bytes(data)
    declare.assert_refused(declare("apply", "bad.yml"), "bad.yml", line, words)


def test_a_fifo_among_the_files_applies_nothing(declare: Any) -> None:
    """A FIFO given with a valid file: refused at once (before: blocked forever), and the
    valid file is not applied either."""
    fine = declare.write("fine.yml", FINE)
    os.mkfifo(declare.workdir / "pipe.yml")
    result = declare("apply", fine, "pipe.yml")
    declare.assert_clean_failure(result)
    assert "pipe.yml:0: not a regular file (a FIFO)" in result.err, result
    assert declare.is_empty()


def test_a_file_over_the_size_limit_applies_nothing(declare: Any) -> None:
    fine = declare.write("fine.yml", FINE + "#" * 2000 + "\n")
    result = declare("apply", "--max-file-size", "1K", fine)
    declare.assert_clean_failure(result)
    assert "fine.yml:0: larger than the limit of 1,024 bytes" in result.err, result
    assert declare.is_empty()
    assert declare("apply", "--max-file-size", "4K", fine).code == 0
    assert declare.names("queues") == {"fine"}


def test_a_policy_key_of_a_plugin_that_is_not_enabled_is_refused_at_plan_time(
    declare: Any,
) -> None:
    """Before: plan said nothing, apply wrote the queue and then the broker refused the
    policy ("federation-upstream-set ... not recognised"), so the rest was never written."""
    if "x-federation-upstream" in declare.exchange_types():
        pytest.skip("this broker runs the federation plugin")
    f = declare.write(
        "fed.yml",
        """
        queues:
          - name: fine
        policies:
          - name: fed
            pattern: "^fed[.]"
            apply_to: exchanges
            definition:
              federation-upstream-set: all
        """,
    )
    for command in ("plan", "apply"):
        result = declare(command, f)
        declare.assert_clean_failure(result)
        assert "fed.yml:4: policy 'fed'" in result.err, result
        assert "rabbitmq_federation plugin is not enabled" in result.err, result
        assert "'federation-upstream-set'" in result.err, result
    assert declare.is_empty()
