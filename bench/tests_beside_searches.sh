#!/usr/bin/env bash
# `make test` from a clean clone, N times in a row, beside two other llmnas searches on the same host
# (issue 31, point 2). The searches are `make demo`'s, each restarted when it ends, in folders of their own;
# when the last `make test` ends they are stopped with SIGINT (exit 130, resumable). Prints one line per
# `make test` (exit status, seconds) and per search (exit status), and exits 1 if any of them failed.
#
#     bash bench/tests_beside_searches.sh [N=3] [OUT=/tmp/llmnas-beside]
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-3}
OUT=${2:-/tmp/llmnas-beside}
LLMNAS="$ROOT/.venv/bin/llmnas"
REQ="classify the 1-D signals into 10 classes; under 10k parameters; under 1 ms on CPU"
rm -rf "$OUT" && mkdir -p "$OUT"

search_loop() {  # $1: the loop's name; $2: its seed offset (seeds 2k + $2: the two loops never search alike)
    local k=0
    while [ ! -e "$OUT/stop" ]; do
        "$LLMNAS" search "$REQ" --data mnist1d --budget 40 --seed "$((k * 2 + $2))" \
            --out "$OUT/$1-$k" >"$OUT/$1-$k.log" 2>&1 &
        local pid=$!
        echo "$pid" >"$OUT/$1.pid"
        wait "$pid"
        echo "$1-$k exit $?" >>"$OUT/searches.txt"
        k=$((k + 1))
    done
}

search_loop a 0 &
A=$!
search_loop b 1 &
B=$!

clone=$(mktemp -d)
git clone -q "$ROOT" "$clone"
failed=0
for i in $(seq 1 "$N"); do
    start=$(date +%s)
    (cd "$clone" && make test) >"$OUT/make-test-$i.log" 2>&1
    rc=$?
    echo "make test $i: exit $rc, $(($(date +%s) - start)) s, $(tail -1 "$OUT/make-test-$i.log")"
    [ "$rc" = 0 ] || failed=1
done

touch "$OUT/stop"
for loop in a b; do kill -INT "$(cat "$OUT/$loop.pid")" 2>/dev/null; done
wait "$A" "$B"
cat "$OUT/searches.txt"
# A search ends with 0, or with 130 when the SIGINT above stopped it; anything else is a failure.
if grep -Ev "exit (0|130)$" "$OUT/searches.txt"; then failed=1; fi
rm -rf "$clone"
exit "$failed"
