"""Every public class, function and method of both packages has a docstring (issue 17).

ruff's pydocstyle rules cannot hold this here: they count nothing in a module whose name starts
with an underscore as public, and almost every module is private. So the source is read with
``ast``: a name is public when neither it nor a class around it starts with ``_``. Property
setters and ``typing.overload`` stubs share their getter's or implementation's docstring.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("declare_amqp", "priority_worker")

_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def undocumented(source: str) -> list[str]:
    """The public names in ``source`` without a docstring, as ``line name``."""
    found: list[str] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, _Definition) or child.name.startswith("_"):
                continue
            decorators = {ast.unparse(d) for d in child.decorator_list}
            exempt = any(d.endswith(".setter") for d in decorators) or bool(
                decorators & {"overload", "typing.overload"}
            )
            if not exempt and ast.get_docstring(child) is None:
                found.append(f"{child.lineno} {prefix}{child.name}")
            if isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(ast.parse(source), "")
    return found


def _modules() -> list[str]:
    return sorted(
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    )


@pytest.mark.parametrize("module", _modules())
def test_public_names_have_docstrings(module: str) -> None:
    """Each public class, function and method of the module says what it is."""
    assert undocumented((ROOT / module).read_text(encoding="utf-8")) == []


def test_the_check_finds_what_is_missing() -> None:
    """The check can fail: undocumented public names are found, private ones and setters not."""
    source = '''
class Shown:
    """Documented."""

    def method(self) -> None:
        pass

    @property
    def value(self) -> int:
        """Documented."""
        return 1

    @value.setter
    def value(self, v: int) -> None:
        pass

    def _private(self) -> None:
        pass


class _Hidden:
    def method(self) -> None:
        pass


async def fetch() -> None:
    pass
'''
    assert undocumented(source) == ["5 Shown.method", "26 fetch"]
