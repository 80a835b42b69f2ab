#!/usr/bin/env bash
# The bench is bench/bench.py (see `python3 bench/bench.py --help`); this name still runs it.
exec python3 "$(dirname "${BASH_SOURCE[0]}")/bench.py" "$@"
