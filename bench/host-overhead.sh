#!/usr/bin/env bash
# Per-request overhead of `dol up` against a native hyper hello-world, measured
# in the same run on the same machine: a path no route matches (the host
# alone), a trivial WASI 0.2 component (an instance per request) and a trivial
# WASI 0.3 one (a reused instance), each with the server's CPU time per
# request; plus cold start with and without the compiled-code cache. Prints
# figures and ratios; asserts nothing.
#
#   bench/host-overhead.sh            # 10 s per load point
#   DURATION=30s bench/host-overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
DOL_ADDR=127.0.0.1:3901
NATIVE_ADDR=127.0.0.1:3900

. bench/lib.sh
cargo build --release -q -p dol-host --bin dol -p dol-test-support --bin native-hello
cargo build --target wasm32-wasip2 --profile component -q -p probe -p reuse-probe

state=$(mktemp -d)
bench_temp+=("$state")

# Milliseconds from process start to the first 200 of /probe/hello.
cold_start() {
  local t0 t1 pid
  t0=$(date +%s%N)
  RUST_LOG=warn target/release/dol up -f bench/hello/spin.toml --listen "$DOL_ADDR" --state-dir "$state" &
  pid=$!
  until curl -sf "http://$DOL_ADDR/probe/hello" >/dev/null 2>&1; do sleep 0.005; done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

rm -rf "$state/compiled-cache"
cold_nocache=$(cold_start)
cold_cache=$(cold_start)

RUST_LOG=warn target/release/dol up -f bench/hello/spin.toml --listen "$DOL_ADDR" --state-dir "$state" &
dol_pid=$!
bench_pids+=($dol_pid)
target/release/native-hello "$NATIVE_ADDR" 2>/dev/null &
native_pid=$!
bench_pids+=($native_pid)
until curl -sf "http://$DOL_ADDR/probe/hello" >/dev/null && curl -sf "http://$DOL_ADDR/reuse/count" >/dev/null \
  && curl -sf "http://$NATIVE_ADDR/" >/dev/null; do sleep 0.05; done

# What answers, and where (the host's own 404 is a JSON error, so its
# non-2xx count is expected and not shown).
paths=("host 404|/no-such-route" "WASI 0.2 probe|/probe/hello" "WASI 0.3 reused|/reuse/count")
printf '%-16s %5s %10s %9s %9s %12s\n' server conns "req/s" "p50 ms" "p99 ms" "CPU µs/req"
for c in 1 32; do
  read -r n_rps n_p50 n_p99 _ n_cpu < <(load_with_cpu "$native_pid" "http://$NATIVE_ADDR/" "$c")
  printf '%-16s %5d %10s %9s %9s %12s\n' native "$c" "$n_rps" "$n_p50" "$n_p99" "$n_cpu"
  for entry in "${paths[@]}"; do
    name=${entry%%|*} path=${entry#*|}
    read -r d_rps d_p50 d_p99 _ d_cpu < <(load_with_cpu "$dol_pid" "http://$DOL_ADDR$path" "$c")
    printf '%-16s %5d %10s %9s %9s %12s\n' "$name" "$c" "$d_rps" "$d_p50" "$d_p99" "$d_cpu"
    awk -v c="$c" -v name="$name" -v nr="$n_rps" -v dr="$d_rps" -v n5="$n_p50" -v d5="$d_p50" -v n9="$n_p99" -v d9="$d_p99" 'BEGIN {
      printf "  %s / native at c=%d: req/s %.2f, p50 %.2f (+%.3f ms), p99 %.2f\n", name, c, dr/nr, d5/n5, d5-n5, d9/n9 }'
  done
done
printf 'cold start to first 200: %d ms without compiled-code cache, %d ms with it (%.2fx)\n' \
  "$cold_nocache" "$cold_cache" "$(awk -v a="$cold_nocache" -v b="$cold_cache" 'BEGIN { printf "%.2f", a/b }')"
