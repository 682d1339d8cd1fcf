#!/usr/bin/env bash
# DOL against its peers: the same chat completion sent straight to the mock
# provider (`mock-llm`), through `dol up` (a real key, no cache; again with a
# key that has limits, which adds the admission transaction), through
# Portkey's gateway (Node.js, from npm) and through LiteLLM's proxy (Python,
# from PyPI, one worker), each warmed up, then loaded with wrk at concurrency
# 1 and 16 in the same run, the other gateways paused (SIGSTOP) meanwhile so
# none takes CPU from the one measured. Prints one table with the added
# p50/p99 over the direct path and the req/s ratios to Portkey; asserts nothing.
#
#   bench/peers.sh                      # 10 s per load point
#   DURATION=5s PEERS_DIR=/tmp/peers bench/peers.sh
#   PEERS_BUILD=0 bench/peers.sh        # binaries and components already built
#
# It installs what it needs itself into $PEERS_DIR (default target/peers:
# Portkey with npm, LiteLLM in a venv with pip) and reuses it on the next
# run. Not part of scripts/test.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
PEERS_DIR=${PEERS_DIR:-$PWD/target/peers}
PORTKEY_VERSION=1.15.2
LITELLM_VERSION=1.100.5
MOCK_ADDR=127.0.0.1:3960
DOL_ADDR=127.0.0.1:3961
PORTKEY_PORT=3962
LITELLM_PORT=3963

. bench/lib.sh
mkdir -p "$PEERS_DIR"

BIN=${BIN:-target/release}

# --- installs (idempotent) ---
if [ "${PEERS_BUILD:-1}" = 1 ]; then
  cargo build --release -q -p dol-host --bin dol -p dol-test-support --bin mock-llm
  target/release/dol build -f spin.toml >/dev/null
fi
portkey="$PEERS_DIR/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
if [ ! -f "$portkey" ]; then
  echo "installing @portkey-ai/gateway@$PORTKEY_VERSION (npm) into $PEERS_DIR/portkey" >&2
  npm install --silent --no-audit --no-fund --prefix "$PEERS_DIR/portkey" \
    "@portkey-ai/gateway@$PORTKEY_VERSION" >&2
fi
litellm="$PEERS_DIR/litellm/bin/litellm"
if [ ! -x "$litellm" ]; then
  echo "installing litellm[proxy]==$LITELLM_VERSION (PyPI) into a venv in $PEERS_DIR/litellm" >&2
  python3 -m venv "$PEERS_DIR/litellm"
  "$PEERS_DIR/litellm/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" >&2
fi

# --- servers ---
state=$(mktemp -d)
bench_temp+=("$state")
body='{"model":"gpt-4o","messages":[{"role":"user","content":"Explain how Rust ownership and borrowing prevent data races"}]}'

"$BIN/mock-llm" --flavor openai --listen "$MOCK_ADDR" >/dev/null &
bench_pids+=($!)
SPIN_VARIABLE_ADMIN_TOKEN=bench-admin \
SPIN_VARIABLE_OPENAI_API_KEY=bench-provider-key \
SPIN_VARIABLE_OPENAI_BASE_URL="http://$MOCK_ADDR/v1" \
RUST_LOG=error "$BIN/dol" up -f spin.toml --listen "$DOL_ADDR" --state-dir "$state" >/dev/null 2>&1 &
bench_pids+=($!)
declare -A pid
pid[dol]=$!
NODE_ENV=production node "$portkey" --port="$PORTKEY_PORT" --headless >/dev/null 2>&1 &
bench_pids+=($!)
pid[portkey]=$!
cat > "$state/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://$MOCK_ADDR/v1
      api_key: bench-provider-key
YAML
"$litellm" --config "$state/litellm.yaml" --host 127.0.0.1 --port "$LITELLM_PORT" \
  --num_workers 1 >/dev/null 2>&1 &
bench_pids+=($!)
pid[litellm]=$!

wait_for() { # URL SECONDS
  local deadline=$((SECONDS + $2))
  until curl -s -o /dev/null "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "bench/peers.sh: $1 did not come up" >&2; exit 1; }
    sleep 0.2
  done
}
wait_for "http://$MOCK_ADDR/v1/models" 30
wait_for "http://$DOL_ADDR/health" 300
wait_for "http://127.0.0.1:$PORTKEY_PORT/" 60
wait_for "http://127.0.0.1:$LITELLM_PORT/health/liveliness" 180

key=$(curl -sf -X POST -H 'authorization: Bearer bench-admin' -H 'content-type: application/json' \
  -d '{"name":"bench"}' "http://$DOL_ADDR/admin/keys" | sed -E 's/.*"key":"([^"]+)".*/\1/')
# A key with limits (never reached here) takes the admission transaction a
# key without limits skips: its row shows what limits cost.
limited_key=$(curl -sf -X POST -H 'authorization: Bearer bench-admin' -H 'content-type: application/json' \
  -d '{"name":"bench-limited","limits":{"requests_per_minute":1000000000,"monthly_budget_micros":1000000000000000}}' \
  "http://$DOL_ADDR/admin/keys" | sed -E 's/.*"key":"([^"]+)".*/\1/')

# script NAME HEADER... : a wrk Lua script posting the body with these headers.
script() {
  local f=$state/$1.lua
  shift
  {
    echo 'wrk.method = "POST"'
    echo 'wrk.headers["Content-Type"] = "application/json"'
    for h in "$@"; do echo "wrk.headers[\"${h%%:*}\"] = \"${h#*: }\""; done
    echo "wrk.body = '$body'"
  } > "$f"
  echo "$f"
}
names=(direct dol dol_limited portkey litellm)
declare -A url lua
url[direct]=http://$MOCK_ADDR/v1/chat/completions
lua[direct]=$(script direct "Authorization: Bearer bench-provider-key")
url[dol]=http://$DOL_ADDR/v1/chat/completions
lua[dol]=$(script dol "Authorization: Bearer $key" "Cache-Control: no-cache")
url[dol_limited]=${url[dol]}
lua[dol_limited]=$(script dol_limited "Authorization: Bearer $limited_key" "Cache-Control: no-cache")
url[portkey]=http://127.0.0.1:$PORTKEY_PORT/v1/chat/completions
lua[portkey]=$(script portkey "Authorization: Bearer bench-provider-key" \
  "x-portkey-provider: openai" "x-portkey-custom-host: http://$MOCK_ADDR/v1")
url[litellm]=http://127.0.0.1:$LITELLM_PORT/v1/chat/completions
lua[litellm]=$(script litellm "Authorization: Bearer bench-provider-key")

# Warm up (and check that every path answers 200 before measuring).
for n in "${names[@]}"; do
  DURATION=2s load "${url[$n]}" 4 -s "${lua[$n]}" >/dev/null
  read -r _ _ _ bad < <(DURATION=1s load "${url[$n]}" 1 -s "${lua[$n]}")
  [ "$bad" -eq 0 ] || echo "warning: $n answers non-2xx during warm-up ($bad)" >&2
done

# only NAME: every gateway but NAME is paused (SIGSTOP), so an idle peer's
# background work (LiteLLM's Python event loop, Node's timers, dol's
# checkpointer) takes no CPU from the one being measured on 2 cores.
only() {
  local other measured=${1%_limited}
  for other in dol portkey litellm; do
    # A gateway that died shows up as errors in its own measurement.
    if [ "$other" = "$measured" ]; then kill -CONT "${pid[$other]}" 2>/dev/null || true
    else kill -STOP "${pid[$other]}" 2>/dev/null || true; fi
  done
}
declare -A rps1 p50 p99 rps16 bad
for n in "${names[@]}"; do
  only "$n"
  read -r rps1[$n] p50[$n] p99[$n] b1 < <(load "${url[$n]}" 1 -s "${lua[$n]}")
  read -r rps16[$n] _ _ b16 < <(load "${url[$n]}" 16 -s "${lua[$n]}")
  bad[$n]=$((b1 + b16))
done
for n in dol portkey litellm; do kill -CONT "${pid[$n]}" 2>/dev/null || true; done

echo
echo "bench/peers.sh $(date -u +%Y-%m-%dT%H:%MZ), wrk $DURATION per point, $(nproc) cores"
printf '| %-28s | %-24s | %-15s | %-20s | %-10s | %-8s |\n' path "added p50 at c=1" "added p99 c=1" "req/s at c=16" "vs Portkey" "non-2xx"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..30})" "$(printf -- '-%.0s' {1..26})" \
  "$(printf -- '-%.0s' {1..17})" "$(printf -- '-%.0s' {1..22})" "$(printf -- '-%.0s' {1..12})" "$(printf -- '-%.0s' {1..10})"
label() { case $1 in direct) echo "straight to the mock";; dol) echo "dol up (real key, no cache)";;
  dol_limited) echo "dol up (key with limits)";;
  portkey) echo "Portkey $PORTKEY_VERSION";; litellm) echo "LiteLLM proxy $LITELLM_VERSION";; esac; }
for n in "${names[@]}"; do
  awk -v n="$(label "$n")" -v self="$n" -v p50="${p50[$n]}" -v p99="${p99[$n]}" -v d50="${p50[direct]}" \
    -v d99="${p99[direct]}" -v r1="${rps1[$n]}" -v r16="${rps16[$n]}" -v pk="${rps16[portkey]}" -v bad="${bad[$n]}" '
    BEGIN {
      if (self == "direct") { a50 = sprintf("— (p50 %.3f ms)", p50); a99 = sprintf("— (%.3f ms)", p99) }
      else { a50 = sprintf("+%.3f ms", p50 - d50); a99 = sprintf("+%.3f ms", p99 - d99) }
      printf "| %-28s | %-24s | %-15s | %-20s | %-10s | %-8s |\n", n, a50, a99,
        sprintf("%d (c=1: %d)", r16, r1), (pk > 0 ? sprintf("%.2f×", r16 / pk) : "-"), bad
    }'
done
awk -v d="${p50[dol]}" -v x="${p50[direct]}" -v r="${rps16[dol]}" -v pk="${rps16[portkey]}" 'BEGIN {
  printf "\ngoals: added p50 %.3f ms (goal <= 0.35 ms: %s); req/s at c=16 %.2f× Portkey (goal >= 4×: %s)\n",
    d - x, (d - x <= 0.35 ? "met" : "not met"), (pk > 0 ? r / pk : 0), (pk > 0 && r / pk >= 4 ? "met" : "not met") }'
