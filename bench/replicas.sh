#!/usr/bin/env bash
# Scale-out: gateway req/s at concurrency 16 (all requests on one API key, and
# spread over KEYS keys) with one, two and three `dol up`
# replicas on shared PostgreSQL + Redis behind HAProxy (round robin), against
# the embedded default (SQLite + the key-value file) on one replica, all in the
# same run behind the same mock provider; plus the added p50 at concurrency 1
# of the shared backends over the embedded default (one replica each, both
# behind the LB). Prints one table with ratios to the embedded baseline;
# asserts nothing. Not part of scripts/test.
#
#   bench/replicas.sh                   # 10 s per load point, 16 keys
#   DURATION=5s KEYS=8 BENCH_BUILD=0 bench/replicas.sh
#
# Every replica, the LB, PostgreSQL, Redis, the mock and wrk share this
# machine's cores: on a small machine more replicas add no CPU, so the
# figures show the cost of the shared backends, not how far DOL scales.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
BIN=${BIN:-target/release}

. bench/lib.sh
. scripts/lib/services.sh
pg_bin >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
command -v redis-server >/dev/null || apt-get install -y -qq redis-server >/dev/null
command -v haproxy >/dev/null || apt-get install -y -qq haproxy >/dev/null
if [ "${BENCH_BUILD:-1}" = 1 ]; then
  cargo build --release -q -p dol-host --bin dol -p dol-test-support --bin mock-llm
  "$BIN/dol" build -f spin.toml >/dev/null
fi

dir=$(mktemp -d /tmp/dol-bench-replicas.XXXXXX)
bench_temp+=("$dir")
pg_port=$(free_port)
redis_port=
stop_backends() {
  bench_cleanup
  [ -n "$redis_port" ] && stop_redis "$redis_port"
  stop_postgres "$dir/pg"
}
trap stop_backends EXIT

start_postgres "$dir/pg" "$pg_port"
psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -c 'CREATE DATABASE dol' >/dev/null
redis_port=$(free_port)
start_redis "$redis_port"
printf '[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\n' "$redis_port" \
  > "$dir/runtime-config.toml"

mock=127.0.0.1:$(free_port)
"$BIN/mock-llm" --flavor openai --listen "$mock" >/dev/null &
bench_pids+=($!)

# replica NAME [dol up args...]: one host with its own state dir; port in $port.
replica() {
  local name=$1
  shift
  port=$(free_port)
  mkdir -p "$dir/$name"
  SPIN_VARIABLE_ADMIN_TOKEN=bench-admin \
  SPIN_VARIABLE_OPENAI_API_KEY=bench-provider-key \
  SPIN_VARIABLE_OPENAI_BASE_URL="http://$mock/v1" \
  RUST_LOG=error "$BIN/dol" up -f spin.toml --listen "127.0.0.1:$port" --state-dir "$dir/$name" "$@" \
    >"$dir/$name.log" 2>&1 &
  bench_pids+=($!)
}
replica embedded
emb_port=$port
shared_ports=()
for i in 1 2 3; do
  SPIN_VARIABLE_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/dol" \
  SPIN_VARIABLE_DATABASE_HOST="127.0.0.1:$pg_port" \
    replica "shared$i" --runtime-config-file "$dir/runtime-config.toml"
  shared_ports+=("$port")
done
for p in "$emb_port" "${shared_ports[@]}"; do
  deadline=$((SECONDS + 300))
  until curl -sf -o /dev/null "http://127.0.0.1:$p/health/ready"; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "bench/replicas.sh: 127.0.0.1:$p not ready (logs in $dir)" >&2; exit 1; }
    sleep 0.2
  done
done

# One HAProxy, one frontend per setup, so every path pays the same LB hop.
declare -A lb
{
  printf 'global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n'
  backend() { # NAME PORT...
    local name=$1 i=0
    shift
    lb[$name]=$(free_port)
    printf 'frontend f_%s\n  bind 127.0.0.1:%s\n  default_backend %s\nbackend %s\n  balance roundrobin\n' \
      "$name" "${lb[$name]}" "$name" "$name"
    for p in "$@"; do i=$((i + 1)); printf '  server r%s 127.0.0.1:%s\n' "$i" "$p"; done
  }
  backend embedded "$emb_port"
  backend shared1 "${shared_ports[0]}"
  backend shared2 "${shared_ports[@]:0:2}"
  backend shared3 "${shared_ports[@]}"
} > "$dir/haproxy.cfg"
haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 &
bench_pids+=($!)
until curl -s -o /dev/null "http://127.0.0.1:${lb[shared3]}/health"; do sleep 0.1; done

newkey() { # PORT
  curl -sf -X POST -H 'authorization: Bearer bench-admin' -H 'content-type: application/json' \
    -d '{"name":"bench"}' "http://127.0.0.1:$1/admin/keys" | sed -E 's/.*"key":"([^"]+)".*/\1/'
}
# script FILE KEY...: each request takes the next key in turn, so with one key
# every request reserves against one usage row (the worst case: one tenant's
# counters serialise its requests, on any backend), with KEYS keys they spread
# as a gateway's tenants do.
script() {
  local file=$1
  shift
  {
    printf 'local keys = {'
    printf '"%s",' "$@"
    printf '}\nlocal n = 0\n'
    cat <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cache-Control"] = "no-cache"
wrk.body = '{"model":"gpt-4o","messages":[{"role":"user","content":"Explain how Rust ownership and borrowing prevent data races"}]}'
request = function()
  n = n + 1
  wrk.headers["Authorization"] = "Bearer " .. keys[(n % #keys) + 1]
  return wrk.format()
end
LUA
  } > "$file"
}
KEYS=${KEYS:-16}
emb_keys=() shared_keys=()
for _ in $(seq "$KEYS"); do
  emb_keys+=("$(newkey "$emb_port")")
  # The shared keys are created through replica 1 and used through all.
  shared_keys+=("$(newkey "${shared_ports[0]}")")
done
script "$dir/embedded.lua" "${emb_keys[0]}"
script "$dir/shared.lua" "${shared_keys[0]}"
script "$dir/embedded-many.lua" "${emb_keys[@]}"
script "$dir/shared-many.lua" "${shared_keys[@]}"
names=(embedded shared1 shared2 shared3)
declare -A lua url rps16 rps16many p50 p99 bad
for n in "${names[@]}"; do
  url[$n]=http://127.0.0.1:${lb[$n]}/v1/chat/completions
  lua[$n]=$dir/shared
done
lua[embedded]=$dir/embedded
# Warm up every replica (round robin reaches each) and check for 200s.
for n in "${names[@]}"; do
  DURATION=3s load "${url[$n]}" 6 -s "${lua[$n]}.lua" >/dev/null
  read -r _ _ _ b < <(DURATION=1s load "${url[$n]}" 3 -s "${lua[$n]}-many.lua")
  [ "$b" -eq 0 ] || echo "warning: $n answers non-2xx during warm-up ($b)" >&2
done
for n in "${names[@]}"; do
  read -r rps16[$n] _ _ b16 < <(load "${url[$n]}" 16 -s "${lua[$n]}.lua")
  read -r rps16many[$n] _ _ b16many < <(load "${url[$n]}" 16 -s "${lua[$n]}-many.lua")
  bad[$n]=$((b16 + b16many))
done
for n in embedded shared1; do
  read -r _ p50[$n] p99[$n] b1 < <(load "${url[$n]}" 1 -s "${lua[$n]}.lua")
  bad[$n]=$((bad[$n] + b1))
done
echo
echo "bench/replicas.sh $(date -u +%Y-%m-%dT%H:%MZ), wrk $DURATION per point, $(nproc) cores shared by every process"
printf '| %-40s | %-20s | %-11s | %-20s | %-11s | %-7s |\n' setup "req/s c=16, one key" "vs embedded" \
  "req/s c=16, $KEYS keys" "vs embedded" non-2xx
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..42})" "$(printf -- '-%.0s' {1..22})" \
  "$(printf -- '-%.0s' {1..13})" "$(printf -- '-%.0s' {1..22})" "$(printf -- '-%.0s' {1..13})" \
  "$(printf -- '-%.0s' {1..9})"
label() { case $1 in embedded) echo "embedded (SQLite + KV file), 1 replica";;
  shared1) echo "PostgreSQL + Redis, 1 replica";;
  shared*) echo "PostgreSQL + Redis, ${1#shared} replicas";; esac; }
for n in "${names[@]}"; do
  awk -v l="$(label "$n")" -v r="${rps16[$n]}" -v b="${rps16[embedded]}" -v m="${rps16many[$n]}" \
    -v bm="${rps16many[embedded]}" -v bad="${bad[$n]}" 'BEGIN {
    printf "| %-40s | %-20d | %-12s | %-20d | %-12s | %-7d |\n", l, r, sprintf("%.2f×", r / b), m,
      sprintf("%.2f×", m / bm), bad }'
done
awk -v e="${p50[embedded]}" -v s="${p50[shared1]}" -v e99="${p99[embedded]}" -v s99="${p99[shared1]}" 'BEGIN {
  printf "\np50 at c=1, one replica behind the LB: embedded %.3f ms, PostgreSQL + Redis %.3f ms: added p50 %+.3f ms (p99 %.3f → %.3f ms)\n",
    e, s, s - e, e99, s99 }'
