"""Hostile topology files, built in the test (none is stored): shared by
``declare/test_hostile_input.py`` (no broker) and ``declare/test_hostile_input_broker.py``
(apply refuses them and the broker stays unchanged). Each also declares a valid queue
``fine``, so "nothing written" means something."""

from __future__ import annotations

import codecs

FINE = "queues:\n  - name: fine\n"


def bomb(depth: int = 9) -> str:
    """A "billion laughs": nine aliases, each listing the previous one nine times."""
    laughs = ", ".join(["lol"] * 9)
    text = FINE + f"  - name: bomb\n    arguments:\n      x-a: &a [{laughs}]\n"
    previous = "a"
    for name in "bcdefghijk"[: depth - 1]:
        text += f"      x-{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


# name: (bytes of the file, the line the message names, words it must contain)
HOSTILE: dict[str, tuple[bytes, int, tuple[str, ...]]] = {
    "utf16-with-bom": (
        codecs.BOM_UTF16_LE + FINE.encode("utf-16-le"),
        1,
        ("UTF-16", "save it as UTF-8"),
    ),
    "utf16-without-bom": (FINE.encode("utf-16-le"), 1, ("NUL byte", "UTF-16")),
    "invalid-utf8": (FINE.encode() + b"  - name: caf\xe9\n", 3, ("not valid UTF-8", "0xe9")),
    "5000-digit-integer": (
        (
            FINE + "  - name: long\n    arguments:\n      x-max-length: " + "9" * 5000 + "\n"
        ).encode(),
        5,
        ("integer of more than 100 digits",),
    ),
    "complex-mapping-key": (
        (FINE + "  - ? [a, b]\n    : c\n").encode(),
        3,
        ("mapping key", "not a list or mapping"),
    ),
    "name-over-255-bytes": (
        # 200 characters but 400 bytes: the limit counts UTF-8 bytes
        (FINE + "  - name: " + "\u00e9" * 200 + "\n").encode(),
        3,
        ("400 bytes long", "at most 255 bytes"),
    ),
    "vhost-over-255-bytes": (
        (FINE + "vhosts:\n  - " + "v" * 256 + "\n").encode(),
        4,
        ("vhost name is 256 bytes long",),
    ),
    "newline-in-a-name": (
        (FINE + '  - name: "evil\\n  + queue forged"\n').encode(),
        3,
        ("queue 'evil\\n  + queue forged'", "control characters (\\n)"),
    ),
    "escape-sequence-in-a-routing-key": (
        (
            FINE + '    bindings:\n      - exchange: amq.topic\n        routing_key: "\\e[2J"\n'
        ).encode(),
        4,
        ("routing key holds control characters (\\x1b)",),
    ),
    "integer-beyond-64-bits": (
        (
            FINE + "  - name: long\n    arguments:\n      x-max-length: 18446744073709551616\n"
        ).encode(),
        3,
        ("18446744073709551616, beyond the signed 64-bit range",),
    ),
    "alias-bomb": (bomb().encode(), 1, ("aliases", "alias bomb")),
    "deep-nesting": ((FINE + "x: " + "[" * 50_000 + "]" * 50_000 + "\n").encode(), 3, ("nest",)),
}
