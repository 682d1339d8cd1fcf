#!/usr/bin/env bash
# Gateway overhead: the same chat completion sent straight to a mock
# OpenAI-compatible provider (the `mock-llm` test server) and through
# `dol up` (key check, limits, routing, the provider call, quality scoring,
# cost, telemetry), same machine, same run, concurrency 1 and 16.
# Prints figures and ratios; asserts nothing.
#
#   bench/gateway-overhead.sh            # 10 s per load point
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
DOL_ADDR=127.0.0.1:3931
MOCK_ADDR=127.0.0.1:3930

. bench/lib.sh
cargo build --release -q -p dol-host --bin dol -p dol-test-support --bin mock-llm
target/release/dol build -f spin.toml >/dev/null

state=$(mktemp -d)
direct=$(mktemp --suffix=.lua)
gateway=$(mktemp --suffix=.lua)
bench_temp+=("$state" "$direct" "$gateway")

body='{"model":"gpt-4o","messages":[{"role":"user","content":"Explain how Rust ownership and borrowing prevent data races"}]}'

target/release/mock-llm --flavor openai --listen "$MOCK_ADDR" >/dev/null &
bench_pids+=($!)
SPIN_VARIABLE_ADMIN_TOKEN=bench-admin \
SPIN_VARIABLE_OPENAI_API_KEY=bench-provider-key \
SPIN_VARIABLE_OPENAI_BASE_URL="http://$MOCK_ADDR/v1" \
RUST_LOG=warn target/release/dol up -f spin.toml --listen "$DOL_ADDR" --state-dir "$state" &
bench_pids+=($!)
until curl -sf "http://$DOL_ADDR/health" >/dev/null && curl -sf "http://$MOCK_ADDR/v1/models" >/dev/null; do sleep 0.05; done

# A real key, created through the admin API (so every request pays the key lookup and the limits transaction).
key=$(curl -sf -X POST -H 'authorization: Bearer bench-admin' -H 'content-type: application/json' \
  -d '{"name":"bench"}' "http://$DOL_ADDR/admin/keys" | sed -E 's/.*"key":"([^"]+)".*/\1/')

for f in "$direct" "$gateway"; do
  cat > "$f" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
wrk.headers["Cache-Control"] = "no-cache"
wrk.body = '$body'
LUA
done

# Warm up: compile caches, SQLite pages, routing state.
for _ in $(seq 20); do curl -sf -o /dev/null -X POST -H "authorization: Bearer $key" -H 'cache-control: no-cache' -d "$body" "http://$DOL_ADDR/v1/chat/completions"; done

printf '%-16s %5s %10s %9s %9s\n' path conns "req/s" "p50 ms" "p99 ms"
for c in 1 16; do
  read -r m_rps m_p50 m_p99 _ < <(load "http://$MOCK_ADDR/v1/chat/completions" "$c" -s "$direct")
  read -r d_rps d_p50 d_p99 d_bad < <(load "http://$DOL_ADDR/v1/chat/completions" "$c" -s "$gateway")
  printf '%-16s %5d %10s %9s %9s\n' "direct to mock" "$c" "$m_rps" "$m_p50" "$m_p99"
  printf '%-16s %5d %10s %9s %9s%s\n' "through dol" "$c" "$d_rps" "$d_p50" "$d_p99" \
    "$([ "$d_bad" -gt 0 ] && echo "  ($d_bad non-2xx!)")"
  awk -v c="$c" -v mr="$m_rps" -v dr="$d_rps" -v m5="$m_p50" -v d5="$d_p50" -v m9="$m_p99" -v d9="$d_p99" 'BEGIN {
    printf "  c=%d: req/s ratio %.2f, added p50 %.3f ms, added p99 %.3f ms\n", c, dr/mr, d5-m5, d9-m9 }'
done
