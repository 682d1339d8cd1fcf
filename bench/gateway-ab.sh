#!/usr/bin/env bash
# A/B gateway overhead: two builds of DOL (e.g. before and after a change),
# each a `dol` binary and a spin.toml whose components it serves, behind the
# same mock provider, loaded in turns (A, B, A, B, …) so both see the same
# machine noise. Prints req/s and p50/p99 per round and the B/A ratios of the
# medians; asserts nothing.
#
#   bench/gateway-ab.sh A_DOL A_MANIFEST B_DOL B_MANIFEST [MOCK_LLM]
#   ROUNDS=5 DURATION=5s bench/gateway-ab.sh …
#   ROUTE=ofrep bench/gateway-ab.sh …   # OFREP single evaluation instead
#   BODY='{"model":"gpt-4o","user":"u1","messages":[…]}' bench/gateway-ab.sh …
#
# Build a baseline with e.g. `git worktree add /tmp/base REV && cd /tmp/base &&
# cargo build --release -p dol-host --bin dol && target/release/dol build`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n '2,13p' "$0"; exit 2; }
A_DOL=$1 A_MANIFEST=$2 B_DOL=$3 B_MANIFEST=$4
MOCK=${5:-target/release/mock-llm}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
ROUTE=${ROUTE:-chat}
MOCK_ADDR=127.0.0.1:3940
A_ADDR=127.0.0.1:3941
B_ADDR=127.0.0.1:3942

. bench/lib.sh
[ -x "$MOCK" ] || cargo build --release -q -p dol-test-support --bin mock-llm

"$MOCK" --flavor openai --listen "$MOCK_ADDR" >/dev/null &
bench_pids+=($!)
# BODY overrides the chat completion sent (e.g. one that names an end user).
body=${BODY:-'{"model":"gpt-4o","messages":[{"role":"user","content":"Explain how Rust ownership and borrowing prevent data races"}]}'}

# start NAME DOL MANIFEST ADDR: serves it with a fresh state dir and a real
# key, left in $key. Not run in a subshell: the trap must see its pid.
start() {
  local dol=$2 manifest=$3 addr=$4 state
  if curl -s -o /dev/null "http://$addr/"; then
    echo "bench/gateway-ab.sh: $addr is taken (a server from another run?)" >&2
    exit 1
  fi
  state=$(mktemp -d)
  bench_temp+=("$state")
  SPIN_VARIABLE_ADMIN_TOKEN=bench-admin \
  SPIN_VARIABLE_OPENAI_API_KEY=bench-provider-key \
  SPIN_VARIABLE_OPENAI_BASE_URL="http://$MOCK_ADDR/v1" \
  RUST_LOG=error "$dol" up -f "$manifest" --listen "$addr" --state-dir "$state" >/dev/null 2>&1 &
  bench_pids+=($!)
  until curl -sf "http://$addr/health" >/dev/null; do
    kill -0 "$!" 2>/dev/null || { echo "bench/gateway-ab.sh: $1 did not start" >&2; exit 1; }
    sleep 0.05
  done
  key=$(curl -sf -X POST -H 'authorization: Bearer bench-admin' -H 'content-type: application/json' \
    -d '{"name":"bench"}' "http://$addr/admin/keys" | sed -E 's/.*"key":"([^"]+)".*/\1/')
}
until curl -sf "http://$MOCK_ADDR/v1/models" >/dev/null; do sleep 0.05; done
start A "$A_DOL" "$A_MANIFEST" "$A_ADDR"
a_key=$key
start B "$B_DOL" "$B_MANIFEST" "$B_ADDR"
b_key=$key

script() {
  local f
  f=$(mktemp --suffix=.lua)
  bench_temp+=("$f")
  cat > "$f" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $1"
wrk.headers["Cache-Control"] = "no-cache"
wrk.body = '$body'
LUA
  echo "$f"
}
path=/v1/chat/completions
if [ "$ROUTE" = ofrep ]; then
  # The seed's A/B flag with the 5-attribute context of bench/ofrep-load.sh.
  path=/ofrep/v1/evaluate/flags/generation_experiment
  body='{"context":{"targetingKey":"user-42","maturityPhase":"run","orgId":"org-7","plan":"pro","region":"eu"}}'
fi
a_lua=$(script "$a_key")
b_lua=$(script "$b_key")
for addr_key in "$A_ADDR $a_key" "$B_ADDR $b_key"; do
  set -- $addr_key
  for _ in $(seq 20); do
    curl -sf -o /dev/null -X POST -H "authorization: Bearer $2" -H 'cache-control: no-cache' \
      -d "$body" "http://$1$path"
  done
done

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
printf '%-5s %5s %6s %10s %9s %9s\n' build conns round "req/s" "p50 ms" "p99 ms"
for c in 1 16; do
  results=$(mktemp)
  bench_temp+=("$results")
  for r in $(seq "$ROUNDS"); do
    for side in A B; do
      if [ "$side" = A ]; then addr=$A_ADDR lua=$a_lua; else addr=$B_ADDR lua=$b_lua; fi
      read -r rps p50 p99 bad < <(load "http://$addr$path" "$c" -s "$lua")
      printf '%-5s %5d %6d %10s %9s %9s%s\n' "$side" "$c" "$r" "$rps" "$p50" "$p99" \
        "$([ "$bad" -gt 0 ] && echo "  ($bad non-2xx!)")"
      echo "$side $rps $p50 $p99" >> "$results"
    done
  done
  for col in 2 3 4; do
    a=$(awk -v k="$col" '$1 == "A" {print $k}' "$results" | median)
    b=$(awk -v k="$col" '$1 == "B" {print $k}' "$results" | median)
    name=$(case $col in 2) echo "req/s";; 3) echo "p50 ms";; 4) echo "p99 ms";; esac)
    awk -v n="$name" -v c="$c" -v a="$a" -v b="$b" \
      'BEGIN { printf "  c=%d %-7s median A %s, B %s, B/A %.2f\n", c, n, a, b, (a > 0 ? b / a : 0) }'
  done
done
