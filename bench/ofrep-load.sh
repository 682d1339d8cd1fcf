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

. bench/lib.sh
cargo build --release -q -p dol-host --bin dol -p dol-test-support --bin native-hello
target/release/dol build -f spin.toml >/dev/null

state=$(mktemp -d)
script=$(mktemp --suffix=.lua)
bench_temp+=("$state" "$script")

cat > "$script" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"context":{"targetingKey":"user-42","maturityPhase":"run","orgId":"org-7","plan":"pro","region":"eu"}}'
LUA

RUST_LOG=warn target/release/dol up -f spin.toml --listen "$DOL_ADDR" --state-dir "$state" &
bench_pids+=($!)
target/release/native-hello "$NATIVE_ADDR" 2>/dev/null &
bench_pids+=($!)
flag_url="http://$DOL_ADDR/ofrep/v1/evaluate/flags/generation_experiment"
until curl -sf -X POST -d '{}' "$flag_url" >/dev/null && curl -sf "http://$NATIVE_ADDR/" >/dev/null; do sleep 0.05; done

printf '%-14s %5s %10s %9s %9s\n' server conns "req/s" "p50 ms" "p99 ms"
for c in 1 16; do
  read -r n_rps n_p50 n_p99 _ < <(load "http://$NATIVE_ADDR/" "$c" -s "$script")
  read -r d_rps d_p50 d_p99 d_bad < <(load "$flag_url" "$c" -s "$script")
  printf '%-14s %5d %10s %9s %9s\n' native "$c" "$n_rps" "$n_p50" "$n_p99"
  printf '%-14s %5d %10s %9s %9s%s\n' "dol OFREP" "$c" "$d_rps" "$d_p50" "$d_p99" \
    "$([ "$d_bad" -gt 0 ] && echo "  ($d_bad non-2xx!)")"
  awk -v c="$c" -v nr="$n_rps" -v dr="$d_rps" -v n5="$n_p50" -v d5="$d_p50" 'BEGIN {
    printf "  ratio OFREP/native at c=%d: req/s %.2f, p50 +%.3f ms\n", c, dr/nr, d5-n5 }'
done
