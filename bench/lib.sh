# Shared by the bench scripts (sourced, not run): wrk, process cleanup, and one
# load point printed as "req/s p50_ms p99_ms non_2xx".

if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

bench_pids=()
bench_temp=()
bench_cleanup() {
  # A paused process (SIGSTOP, bench/peers.sh) handles SIGTERM only once continued.
  for p in "${bench_pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  rm -rf "${bench_temp[@]}"
}
trap bench_cleanup EXIT

# load URL CONNECTIONS [WRK_ARGS...]
load() {
  local url=$1 connections=$2 threads=1
  shift 2
  [ "$connections" -gt 1 ] && threads=2
  wrk -t"$threads" -c"$connections" -d"$DURATION" --latency "$@" "$url" | awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { bad = $4 }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, bad }'
}
