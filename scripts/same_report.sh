#!/usr/bin/env bash
# Check that a change leaves the bundled-sample simulation untouched: run
# `bot simulate --config config.example.toml` (the example policy, then the four bundled policies
# side by side) at REF (default: main) and at the working tree, and compare the outputs byte for
# byte: report.json apart from its elapsed_seconds line, every CSV and account.json (the charts
# are skipped: they only draw the same series).
# Usage: bash scripts/same_report.sh [REF]
set -euo pipefail
cd "$(dirname "$0")/.."
REF=${1:-main}
PY=${PYTHON:-$PWD/.venv/bin/python}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/ref" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git worktree add --quiet --detach "$work/ref" "$REF"
# The bundled example (vol_target), then every bundled policy side by side.
ALL=(--policy policies/vol_target.toml --policy policies/static_3x.toml
     --policy policies/risk_parity.toml --policy policies/conservative.toml)
# The reference runs its own code (PYTHONPATH first) with this checkout's installed dependencies.
(cd "$work/ref" && PYTHONPATH="$work/ref" "$PY" -m bot simulate --config config.example.toml \
    --out "$work/before/example" >/dev/null \
 && PYTHONPATH="$work/ref" "$PY" -m bot simulate --config config.example.toml "${ALL[@]}" \
    --out "$work/before/all" >/dev/null)
# This checkout's code, whichever tree the interpreter's environment installed (a worktree run
# with the main checkout's virtualenv would otherwise compare main with main).
PYTHONPATH="$PWD" "$PY" -m bot simulate --config config.example.toml --out "$work/after/example" >/dev/null
PYTHONPATH="$PWD" "$PY" -m bot simulate --config config.example.toml "${ALL[@]}" --out "$work/after/all" >/dev/null

status=0
while IFS= read -r -d '' f; do
    rel=${f#"$work/before/"}
    case "$rel" in
        *.png) continue ;;
        *report.json)
            if ! diff <(grep -v '"elapsed_seconds"' "$f") \
                      <(grep -v '"elapsed_seconds"' "$work/after/$rel"); then
                echo "DIFFERENT: $rel" >&2; status=1
            fi ;;
        *)
            if ! cmp -s "$f" "$work/after/$rel"; then echo "DIFFERENT: $rel" >&2; status=1; fi ;;
    esac
done < <(find "$work/before" -type f -print0)
n=$(find "$work/before" -type f ! -name '*.png' | wc -l)
[ "$status" -eq 0 ] && echo "same outputs as $REF: $n files (report.json apart from elapsed_seconds)"
exit "$status"
