#!/usr/bin/env bash
# Check that a change leaves the bundled-sample simulation untouched: run
# `bot simulate --config config.example.toml` at REF (default: main) and at the working tree, and
# compare the outputs byte for byte: report.json apart from its elapsed_seconds line, and every CSV
# and account.json (report.png is skipped: it only draws the same series).
# Usage: bash scripts/same_report.sh [REF]
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${1:-main}
BOT=${BOT:-$PWD/.venv/bin/bot}
PY=${PYTHON:-$PWD/.venv/bin/python}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/ref" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git worktree add --quiet --detach "$work/ref" "$REF"
# The reference runs its own code (PYTHONPATH first) with this checkout's installed dependencies.
(cd "$work/ref" && PYTHONPATH="$work/ref" "$PY" -m bot simulate --config config.example.toml \
    --out "$work/before" >/dev/null)
"$BOT" simulate --config config.example.toml --out "$work/after" >/dev/null

status=0
for f in "$work"/before/*; do
    name=$(basename "$f")
    case "$name" in
        report.png) continue ;;
        report.json)
            if ! diff <(grep -v '"elapsed_seconds"' "$f") \
                      <(grep -v '"elapsed_seconds"' "$work/after/$name"); then
                echo "DIFFERENT: $name" >&2; status=1
            fi ;;
        *)
            if ! cmp -s "$f" "$work/after/$name"; then echo "DIFFERENT: $name" >&2; status=1; fi ;;
    esac
done
[ "$status" -eq 0 ] && echo "same outputs as $REF (report.json apart from elapsed_seconds)"
exit "$status"
