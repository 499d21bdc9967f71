#!/usr/bin/env bash
# Quick start 2: the whole test suite (and the linter). CI runs exactly this.
source "$(dirname "$0")/env.sh"
cd "$ROOT"
ruff check src tests benchmarks
# pytest exits 5 when it collects no test: that is a failure here, as is any other non-zero.
python -m pytest tests -q "$@"
