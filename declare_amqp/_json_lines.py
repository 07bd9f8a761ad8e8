"""JSON text to Python values that remember where each object starts (``JsonObject.line``),
so a definitions file's problems read ``file:line`` like a YAML file's; duplicate keys and
integers too long to parse are problems, not crashes."""

from __future__ import annotations

import bisect
import json
import re
from typing import Any

from ._errors import Location, Problem
from ._files import MAX_INT_DIGITS


class JsonObject(dict[str, Any]):
    """A JSON object that remembers the line it starts on (and, translated to YAML keys,
    how the file spelt each key)."""

    line: int = 1
    spelled: dict[str, str]


# Strings (with escapes) and the braces outside them: enough to find where each object
# starts without a second JSON parser.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}]', re.DOTALL)


def _object_lines(text: str) -> list[int]:
    """The start line of every JSON object, in the order the decoder *closes* them."""
    newlines = [m.start() for m in re.finditer("\n", text)]
    opened: list[int] = []
    closing: list[int] = []
    for m in _TOKENS.finditer(text):
        token = m.group()
        if token == "{":
            opened.append(m.start())
        elif token == "}" and opened:
            closing.append(bisect.bisect_left(newlines, opened.pop()) + 1)
    return closing


class _TooManyDigits(ValueError):
    pass


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:  # Python itself refuses past 4,300 digits
        raise _TooManyDigits
    return int(digits)


def load_json(text: str, path: str) -> tuple[Any, list[Problem]]:
    """Parse JSON keeping each object's line; duplicate keys are problems, as in YAML."""
    lines = iter(_object_lines(text))
    problems: list[Problem] = []

    def make(pairs: list[tuple[str, Any]]) -> JsonObject:
        obj = JsonObject()
        obj.line = next(lines, 1)
        for key, value in pairs:
            if key in obj:
                problems.append(
                    Problem(f"key '{key}' appears twice in one object", Location(path, obj.line))
                )
            obj[key] = value
        return obj

    try:
        return json.loads(text, object_pairs_hook=make, parse_int=_bounded_int), problems
    except _TooManyDigits:
        # parse_int sees the digits only, not where they stand: find the first such run
        long_run = re.search(rf"-?\d{{{MAX_INT_DIGITS + 1},}}", text)
        line = text.count("\n", 0, long_run.start()) + 1 if long_run else 1
        return None, [
            Problem(f"an integer of more than {MAX_INT_DIGITS} digits", Location(path, line))
        ]
    except RecursionError:
        return None, [Problem("not valid JSON: nested too deeply", Location(path, 1))]
    except json.JSONDecodeError as exc:
        return None, [
            Problem(f"not valid JSON: {exc.msg} (column {exc.colno})", Location(path, exc.lineno))
        ]
