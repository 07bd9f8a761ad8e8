"""Issue 17's promise for topology kinds: a new one is one module in ``kinds/`` plus its line in
the registry (and client methods for its endpoint). A copy of the package gets the made-up
kind ``widget`` (``fixtures/widget_kind.py``) and nothing else but the registry lines; a fresh
interpreter then reads widgets from a file with their lines, validates them, plans them against
a broker read through the kind's client method, applies the plan through a fake management
client (and rolls a refused apply back), and exports them — with the same engines as the five
built-in kinds, and no other module edited.

The same promise for access kinds: a second copy gets the made-up access kind ``gadget``
(``fixtures/gadget_kind.py``, its ``kind`` an ``AccessKindName``, no ``Kind`` member) and its
registry line only; gadgets are read, planned in the access phases, rendered, put in JSON,
applied through a fake client, rolled back after a refusal, and exported."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "declare_amqp"
KIND_MODULE = Path(__file__).resolve().parent / "fixtures" / "widget_kind.py"

_REGISTRY_LINE = (
    "TOPOLOGY_KINDS: tuple[TopologyKind[Any], ...] = (VHOST, EXCHANGE, POLICY, QUEUE, BINDING)"
)

# What runs in the copy: each step's outcome printed as one JSON object.
_SCRIPT = r"""
import asyncio, json, sys
from declare_amqp import TopologyError, json_schema, parse_unvalidated
from declare_amqp._access import read_broker_kinds
from declare_amqp._address import BrokerAddress
from declare_amqp._apply import apply_plan
from declare_amqp._errors import DeclareAmqpError
from declare_amqp._export import to_document, to_yaml
from declare_amqp._definitions import to_definitions
from declare_amqp._model import Topology
from declare_amqp._plan import apply_position, PHASES
from declare_amqp._planning import plan
from declare_amqp._validate import validate
from declare_amqp.kinds import TOP_KEYS, topology_kind_of

out = {}
text = (
    "exchanges: [{name: x, type: direct}]\n"
    "widgets:\n"
    "  - {name: w1, colour: green, size: 3}\n"
    "  - {name: w3}\n"
)
files = parse_unvalidated(text, "t.yml")
out["read"] = [[w.name, w.colour, w.size, str(w.location)] for w in files.of("widgets")]
out["top_keys"] = [k.name for k in TOP_KEYS]
out["schema"] = sorted(json_schema()["$defs"]["widget"]["properties"])
try:
    parse_unvalidated("widgets:\n  - {name: w, shape: round}\n", "bad.yml")
except TopologyError as exc:
    out["bad_key"] = [f"{p.location}: {p.message}" for p in exc.problems]
wrong = parse_unvalidated("widgets:\n  - {name: w, size: 0}\n", "zero.yml")
out["problems"] = [f"{p.location}: {p.message}" for p in validate(wrong)]


class FakeManagement:
    node = None

    def __init__(self, broker, refuse=None):
        self.broker, self.refuse, self.calls = broker, refuse, []

    def list_widgets(self, vhost):
        return [w for (v, _), w in sorted(self.broker.items()) if v == vhost]

    def put_widget(self, w):
        if w.name == self.refuse:
            raise DeclareAmqpError(f"refused {w.name}")
        self.calls.append(["put", w.vhost, w.name, w.colour])
        self.broker[(w.vhost, w.name)] = {"name": w.name, "colour": w.colour, "size": w.size}

    def delete_widget(self, vhost, name):
        self.calls.append(["delete", vhost, name])
        del self.broker[(vhost, name)]


def broker():
    return {
        ("/", "w1"): {"name": "w1", "colour": "blue", "size": 3},
        ("/", "w2"): {"name": "w2", "colour": "red", "size": 1},
    }


fake = FakeManagement(broker())
actual = read_broker_kinds(fake, ["/"], Topology())
out["broker_read"] = [[w.vhost, w.name, w.colour] for w in actual.of("widgets")]
widgets_only = Topology().holding(widgets=files.of("widgets"))
p = plan(widgets_only, actual, prune=True)
out["plan"] = [c.to_dict() for c in p.changes]
out["phases"] = [PHASES[apply_position(c)[0]].name for c in p.changes]
address = BrokerAddress(nodes=(), user="guest", password="guest")
apply_plan(address, fake, p)
out["applied"] = fake.calls
again_read = read_broker_kinds(fake, ["/"], Topology())
out["after"] = [c.to_dict() for c in plan(widgets_only, again_read, prune=True).changes]

# a refused write: the widget written before it is rolled back by the kind's undo
refusing = FakeManagement(broker(), refuse="w3")
try:
    apply_plan(address, refusing, p)
    out["rolled_back"] = "no error"
except DeclareAmqpError as exc:
    out["rolled_back"] = {"calls": refusing.calls, "broker": sorted(map(list, refusing.broker)),
                          "error": type(exc).__name__}

doc = to_document(files, ["/"])
out["export"] = doc.get("widgets")
again = parse_unvalidated(to_yaml(files, ["/"]), "export.yml")
out["round_trip"] = again.of("widgets") == files.of("widgets")
out["definitions_keys"] = sorted(to_definitions(files, ["/"]))
out["in_vhost"] = [w.name for w in files.in_vhost("/").of("widgets")]
from declare_amqp._saved_plan import state_objects
out["fingerprinted"] = sorted(state_objects(actual))
print(json.dumps(out))
"""


def _copy_with_widget(tmp: Path) -> Path:
    """The package copied under ``tmp`` with the widget module and its registry lines."""
    copy = tmp / "declare_amqp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(KIND_MODULE, copy / "kinds" / "widget.py")
    registry = copy / "kinds" / "__init__.py"
    text = registry.read_text("utf-8")
    assert text.count(_REGISTRY_LINE) == 1
    text = text.replace(_REGISTRY_LINE, _REGISTRY_LINE[:-1] + ", WIDGET)")
    text = text.replace(
        "from .vhost_settings import", "from .widget import WIDGET\nfrom .vhost_settings import"
    )
    registry.write_text(text, "utf-8")
    return copy


def _changed_files(copy: Path) -> set[str]:
    """The files of the copy that differ from the package, or that it alone has."""
    changed: set[str] = set()

    def walk(cmp: filecmp.dircmp[str], prefix: str) -> None:
        changed.update(prefix + n for n in (*cmp.diff_files, *cmp.left_only, *cmp.right_only))
        for name, sub in cmp.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(filecmp.dircmp(PACKAGE, copy, ignore=["__pycache__"]), "")
    return changed


def test_a_new_topology_kind_is_one_module_and_its_registry_line(tmp_path: Path) -> None:
    """Only ``kinds/widget.py`` and the registry differ from the package; with them, widgets
    are read with their lines, refused with the key table's message, checked by their
    ``problems``, read from the broker by their client method, planned (update in place,
    create, prune's delete) in the phases for such kinds, written through the client, rolled
    back after a refusal, exported and read back; definitions JSON leaves them out."""
    copy = _copy_with_widget(tmp_path)
    assert _changed_files(copy) == {"kinds/__init__.py", "kinds/widget.py"}, "only these two"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)

    assert out["read"] == [["w1", "green", 3, "t.yml:3"], ["w3", "red", 1, "t.yml:4"]]
    assert out["top_keys"].index("widgets") > out["top_keys"].index("policies")
    assert out["schema"] == ["colour", "name", "size", "vhost"]
    assert out["bad_key"] == ["bad.yml:2: unknown key 'shape'; allowed: name, vhost, colour, size"]
    assert out["problems"] == ["zero.yml:2: 'size' must be at least 1"]
    assert out["broker_read"] == [["/", "w1", "blue"], ["/", "w2", "red"]]
    assert [(c["action"], c["kind"], c["name"], c["location"]) for c in out["plan"]] == [
        ("update", "widget", "w1", "t.yml:3"),
        ("create", "widget", "w3", "t.yml:4"),
        ("delete", "widget", "w2", None),
    ]
    assert out["plan"][0]["before"] == {"colour": "blue"}
    assert out["plan"][0]["after"] == {"colour": "green"}
    assert out["phases"] == [
        "write other topology objects",
        "write other topology objects",
        "delete other topology objects",
    ]
    assert out["applied"] == [
        ["put", "/", "w1", "green"],
        ["put", "/", "w3", "red"],
        ["delete", "/", "w2"],
    ]
    assert out["after"] == []
    # w1's update written, then w3 refused: w1 written back to blue, nothing deleted
    assert out["rolled_back"]["error"] != "no error"
    assert out["rolled_back"]["calls"] == [["put", "/", "w1", "green"], ["put", "/", "w1", "blue"]]
    assert out["rolled_back"]["broker"] == [["/", "w1"], ["/", "w2"]]
    assert out["export"] == [
        {"name": "w1", "colour": "green", "size": 3},
        {"name": "w3", "colour": "red", "size": 1},
    ]
    assert out["round_trip"] is True
    assert "widgets" not in out["definitions_keys"]
    assert out["in_vhost"] == ["w1", "w3"]
    # a saved plan's fingerprint of the broker state covers the broker's widgets
    assert out["fingerprinted"] == ["widget 'w1' (vhost '/')", "widget 'w2' (vhost '/')"]


# ------------------------------------------------------------------ an access kind

GADGET_MODULE = Path(__file__).resolve().parent / "fixtures" / "gadget_kind.py"
_ACCESS_REGISTRY_END = "    SHOVEL,\n)\n"

# What runs in the copy with the gadget kind: each step's outcome printed as one JSON object.
_GADGET_SCRIPT = r"""
import io, json
from rich.console import Console
from declare_amqp import TopologyError, json_schema, parse_unvalidated
from declare_amqp._access import access_document, access_plan, read_for_export
from declare_amqp._address import BrokerAddress
from declare_amqp._apply import apply_plan
from declare_amqp._definitions import to_definitions
from declare_amqp._errors import DeclareAmqpError
from declare_amqp._export import to_yaml
from declare_amqp._plan import CREATE, DELETE, PHASES, Change, Kind, Plan, apply_position, ordered
from declare_amqp._render import print_plan
from declare_amqp.kinds import TOP_KEYS

out = {}
text = (
    "vhost: /\n"
    "gadgets:\n"
    "  - {name: g1, flavour: sweet, weight: 2}\n"
    "  - {name: g3}\n"
)
files = parse_unvalidated(text, "t.yml")
gadgets = files.access.group("gadgets")
out["read"] = [[g.name, g.flavour, g.weight, str(g.location)] for g in gadgets]
out["managed"] = sorted(files.access.managed)
out["top_keys"] = [k.name for k in TOP_KEYS]
out["schema"] = sorted(json_schema()["$defs"]["gadget"]["properties"])
try:
    parse_unvalidated("gadgets:\n  - {name: g, shape: round}\n", "bad.yml")
except TopologyError as exc:
    out["bad_key"] = [f"{p.location}: {p.message}" for p in exc.problems]


address = BrokerAddress(nodes=(), user="guest", password="guest")


class FakeManagement:
    node = None
    version = "3.10.8"
    address = address

    def __init__(self, broker, refuse=None):
        self.broker, self.refuse, self.calls = broker, refuse, []

    def whoami(self):
        return {"name": "admin", "tags": ["administrator"]}

    def list_gadgets(self, vhost):
        return [g for (v, _), g in sorted(self.broker.items()) if v == vhost]

    def put_gadget(self, g):
        if g.name == self.refuse:
            raise DeclareAmqpError(f"refused {g.name}")
        self.calls.append(["put", g.vhost, g.name, g.flavour])
        self.broker[(g.vhost, g.name)] = {"name": g.name, "flavour": g.flavour, "weight": g.weight}

    def delete_gadget(self, vhost, name):
        self.calls.append(["delete", vhost, name])
        del self.broker[(vhost, name)]


def broker():
    return {
        ("/", "g1"): {"name": "g1", "flavour": "salty", "weight": 2},
        ("/", "g2"): {"name": "g2", "flavour": "plain", "weight": 1},
    }


fake = FakeManagement(broker())
p = access_plan(fake, files, Plan(vhosts=("/",)), prune=True)
out["plan"] = [c.to_dict() for c in p.changes]
out["kinds"] = [type(c.kind).__name__ for c in p.changes]
out["phases"] = [PHASES[apply_position(c)[0]].name for c in p.changes]
out["json"] = json.loads(json.dumps(p.to_dict()))["summary"]
screen = Console(file=io.StringIO(), force_terminal=False, width=200)
print_plan(screen, p, "t.yml")
out["rendered"] = screen.file.getvalue().splitlines()

# the order among the built-in access kinds: after them when written, before them when deleted
gadget, first = p.changes[1], Change(CREATE, Kind.SHOVEL, "/", "s")
gone = Change(DELETE, Kind.VHOST, "/", "v")
out["order"] = [
    (c.action.value, str(c.kind))
    for c in ordered([gone, p.changes[2], gadget, first])
]

report = apply_plan(address, fake, p)
out["applied"] = fake.calls
out["done"] = [[c.action.value, c.name] for c in report.written]
replanned = access_plan(fake, files, Plan(vhosts=("/",)), prune=True)
out["after"] = [c.to_dict() for c in replanned.changes]

# a refused write: the gadget written before it is rolled back by the kind's undo
refusing = FakeManagement(broker(), refuse="g3")
try:
    apply_plan(address, refusing, p)
    out["rolled_back"] = {"error": "no error"}
except DeclareAmqpError as exc:
    state = sorted([v, n, g["flavour"]] for (v, n), g in refusing.broker.items())
    out["rolled_back"] = {"calls": refusing.calls, "broker": state,
                          "error": type(exc).__name__, "message": str(exc)}

# a refused write after a create: the create is deleted again
creating = FakeManagement({}, refuse="g1")
two = parse_unvalidated("vhost: /\ngadgets:\n  - {name: g0}\n  - {name: g1}\n", "c.yml")
fresh = access_plan(creating, two, Plan(vhosts=("/",)), prune=False)
try:
    apply_plan(address, creating, fresh)
except DeclareAmqpError:
    out["created_undone"] = {"calls": creating.calls, "broker": sorted(map(list, creating.broker))}

out["export"] = access_document(files.access, ["/"]).get("gadgets")
again = parse_unvalidated(to_yaml(files, ["/"]), "export.yml")
out["round_trip"] = again.access.group("gadgets") == files.access.group("gadgets")
out["definitions_keys"] = sorted(to_definitions(files, ["/"]))
print(json.dumps(out))
"""


def _copy_with_gadget(tmp: Path) -> Path:
    """The package copied under ``tmp`` with the gadget module and its registry line."""
    copy = tmp / "declare_amqp"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(GADGET_MODULE, copy / "kinds" / "gadget.py")
    registry = copy / "kinds" / "__init__.py"
    text = registry.read_text("utf-8")
    assert text.count(_ACCESS_REGISTRY_END) == 1
    text = text.replace(_ACCESS_REGISTRY_END, "    SHOVEL,\n    GADGET,\n)\n")
    text = text.replace(
        "from .vhost_settings import", "from .gadget import GADGET\nfrom .vhost_settings import"
    )
    registry.write_text(text, "utf-8")
    return copy


def test_a_new_access_kind_is_one_module_and_its_registry_line(tmp_path: Path) -> None:
    """Only ``kinds/gadget.py`` and the registry differ from the package (no ``Kind`` member,
    no place in ``_plan.ACCESS_KINDS``); with them, gadgets are read with their lines, an
    unknown key refused, planned (update, create, prune's delete) in the access phases after
    the built-in access kinds (deleted before them), rendered and put in JSON, written
    through the client, rolled back after a refusal, and exported and read back."""
    copy = _copy_with_gadget(tmp_path)
    assert _changed_files(copy) == {"kinds/__init__.py", "kinds/gadget.py"}, "only these two"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-c", _GADGET_SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)

    assert out["read"] == [["g1", "sweet", 2, "t.yml:3"], ["g3", "plain", 1, "t.yml:4"]]
    assert out["managed"] == ["gadgets"]
    assert out["top_keys"][-1] == "gadgets"
    assert out["schema"] == ["flavour", "name", "vhost", "weight"]
    assert out["bad_key"] == [
        "bad.yml:2: unknown key 'shape'; allowed: name, vhost, flavour, weight"
    ]
    assert [(c["action"], c["kind"], c["name"], c["location"]) for c in out["plan"]] == [
        ("update", "gadget", "g1", "t.yml:3"),
        ("create", "gadget", "g3", "t.yml:4"),
        ("delete", "gadget", "g2", None),
    ]
    assert out["kinds"] == ["AccessKindName"] * 3
    assert out["plan"][0]["before"] == {"flavour": "salty"}
    assert out["plan"][0]["after"] == {"flavour": "sweet"}
    assert out["plan"][1]["after"] == {"name": "g3", "vhost": "/", "flavour": "plain", "weight": 1}
    assert out["phases"] == [
        "write access objects",
        "write access objects",
        "delete access objects",
    ]
    assert out["json"] == {
        "create": 1,
        "update": 1,
        "delete": 1,
        "conflict": 0,
        "refuse": 0,
        "migrate": 0,
    }
    assert "  + gadget   g3  plain, weight 1  (t.yml:4)" in out["rendered"]
    assert "  - gadget   g2  plain, weight 1" in out["rendered"]
    assert out["order"] == [
        ["create", "shovel"],
        ["create", "gadget"],
        ["delete", "gadget"],
        ["delete", "vhost"],
    ]
    assert out["applied"] == [
        ["put", "/", "g1", "sweet"],
        ["put", "/", "g3", "plain"],
        ["delete", "/", "g2"],
    ]
    assert out["done"] == [["update", "g1"], ["create", "g3"], ["delete", "g2"]]
    assert out["after"] == []
    # g1's update written, then g3 refused: g1 written back to salty, nothing deleted
    rolled = out["rolled_back"]
    assert rolled["error"] == "ApplyError"
    assert rolled["calls"] == [["put", "/", "g1", "sweet"], ["put", "/", "g1", "salty"]]
    assert rolled["broker"] == [["/", "g1", "salty"], ["/", "g2", "plain"]]
    assert "rolled back: the broker is as it was (1 writes undone)" in rolled["message"]
    # g0 created, then g1 refused: g0 deleted again
    assert out["created_undone"] == {
        "calls": [["put", "/", "g0", "plain"], ["delete", "/", "g0"]],
        "broker": [],
    }
    assert out["export"] == [
        {"name": "g1", "flavour": "sweet", "weight": 2},
        {"name": "g3", "flavour": "plain", "weight": 1},
    ]
    assert out["round_trip"] is True
    assert "gadgets" not in out["definitions_keys"]


def test_the_registry_refuses_a_kind_named_for_the_other_group() -> None:
    """An access kind named by a plain ``KindName`` would be planned and rolled back as a
    topology kind's, and a topology kind named by an ``AccessKindName`` as an access kind's:
    the registry refuses both when it is imported."""
    from types import SimpleNamespace
    from typing import Any

    from declare_amqp._plan import AccessKindName, Kind, KindName, Writer
    from declare_amqp.kinds import _named_as_access, _written_by_management

    def access(kind: Any) -> Any:
        return SimpleNamespace(kind=kind)

    def topology(kind: Any) -> Any:
        return SimpleNamespace(kind=kind, writer=Writer.MANAGEMENT)

    _named_as_access((access(Kind.USER), access(AccessKindName("gadget"))))
    _written_by_management((topology(Kind.POLICY), topology(KindName("widget"))))
    with pytest.raises(TypeError, match="^access kind 'gadget': its kind must be an Access"):
        _named_as_access((access(KindName("gadget")),))
    with pytest.raises(TypeError, match="^topology kind 'widget': its kind must be a KindName$"):
        _written_by_management((topology(AccessKindName("widget")),))
