#!/usr/bin/env bash
# OFREP single-flag evaluation through `dol up` against a native hyper
# hello-world, same machine, same run (wrk, POST with a JSON context).
# Prints figures and ratios; asserts nothing.
#
#   bench/ofrep-load.sh            # 10 s per load point
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
DOL_ADDR=127.0.0.1:3911
NATIVE_ADDR=127.0.0.1:3910

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -q -p dol-host --bin dol -p dol-test-support --bin native-hello
target/release/dol build -f spin.toml >/dev/null

state=$(mktemp -d)
script=$(mktemp --suffix=.lua)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$state" "$script"; }
trap cleanup EXIT

cat > "$script" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"context":{"targetingKey":"user-42","maturityPhase":"run","orgId":"org-7","plan":"pro","region":"eu"}}'
LUA

RUST_LOG=warn target/release/dol up -f spin.toml --listen "$DOL_ADDR" --state-dir "$state" &
pids+=($!)
target/release/native-hello "$NATIVE_ADDR" 2>/dev/null &
pids+=($!)
flag_url="http://$DOL_ADDR/ofrep/v1/evaluate/flags/generation_experiment"
until curl -sf -X POST -d '{}' "$flag_url" >/dev/null && curl -sf "http://$NATIVE_ADDR/" >/dev/null; do sleep 0.05; done

load() {
  local url=$1 connections=$2 threads=1
  [ "$connections" -gt 1 ] && threads=2
  wrk -t"$threads" -c"$connections" -d"$DURATION" --latency -s "$script" "$url" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { bad = $4 }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, bad }'
}

printf '%-14s %5s %10s %9s %9s\n' server conns "req/s" "p50 ms" "p99 ms"
for c in 1 16; do
  read -r n_rps n_p50 n_p99 _ < <(load "http://$NATIVE_ADDR/" "$c")
  read -r d_rps d_p50 d_p99 d_bad < <(load "$flag_url" "$c")
  printf '%-14s %5d %10s %9s %9s\n' native "$c" "$n_rps" "$n_p50" "$n_p99"
  printf '%-14s %5d %10s %9s %9s%s\n' "dol OFREP" "$c" "$d_rps" "$d_p50" "$d_p99" \
    "$([ "$d_bad" -gt 0 ] && echo "  ($d_bad non-2xx!)")"
  awk -v c="$c" -v nr="$n_rps" -v dr="$d_rps" -v n5="$n_p50" -v d5="$d_p50" 'BEGIN {
    printf "  ratio OFREP/native at c=%d: req/s %.2f, p50 +%.3f ms\n", c, dr/nr, d5-n5 }'
done
