#!/usr/bin/env bash
# Regenerates the picture of topology.example.yml that the README shows:
#   docs/topology.dot  what `declare-amqp graph --format dot` prints for the example
#   docs/topology.svg  that, rendered by Graphviz (Debian's graphviz: `apt-get install graphviz`)
# tests/declare/test_graph.py fails when either is out of date.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
"$PY" -m declare_amqp graph --format dot topology.example.yml -o docs/topology.dot
dot -Tsvg docs/topology.dot -o docs/topology.svg
echo "wrote docs/topology.dot and docs/topology.svg" >&2
