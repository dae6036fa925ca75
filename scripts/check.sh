#!/usr/bin/env bash
# Lint, format check and the default (fast) test suite. Usage: bash scripts/check.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
