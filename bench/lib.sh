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

# cpu_ticks PID: the process's user + system CPU time so far, in clock ticks.
cpu_ticks() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# load_with_cpu PID URL CONNECTIONS [WRK_ARGS...]: one load point as `load`
# prints it, followed by PID's CPU time per request in µs over that run.
load_with_cpu() {
  local pid=$1 before after rps p50 p99 bad
  shift
  before=$(cpu_ticks "$pid")
  read -r rps p50 p99 bad < <(load "$@")
  after=$(cpu_ticks "$pid")
  awk -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v d="$DURATION" \
    -v rps="$rps" -v p50="$p50" -v p99="$p99" -v bad="$bad" 'BEGIN {
      # The duration as wrk takes it: seconds, or suffixed s, m or h.
      unit = 1
      if (d ~ /m$/) unit = 60
      if (d ~ /h$/) unit = 3600
      sub(/[smh]$/, "", d)
      d *= unit
      printf "%s %s %s %s %.0f\n", rps, p50, p99, bad, (rps > 0 ? t / hz * 1e6 / (rps * d) : 0) }'
}
