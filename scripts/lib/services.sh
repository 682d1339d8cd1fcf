# Throw-away PostgreSQL and Redis servers on loopback, for scripts/test and
# scripts/cluster (source this file). PostgreSQL refuses to run as root, so
# as root its data directory belongs to the `postgres` user the Debian
# package creates and its tools run through runuser.

# A TCP port of 127.0.0.1 that is free now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; return 1; }
  echo "$bin"
}

as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_postgres DIR PORT: a fresh cluster in DIR (trust auth for user
# `postgres`, loopback only, no fsync: test data), serving on PORT.
start_postgres() {
  local dir=$1 port=$2 bin
  bin=$(pg_bin)
  rm -rf "$dir" && mkdir -p "$dir/data" "$dir/socket"
  if [ "$(id -u)" = 0 ]; then
    # The postgres user must reach DIR (mktemp -d makes its parent 0700).
    chmod 755 "$(dirname "$dir")"
    chown -R postgres "$dir"
  fi
  as_pg_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log"
  as_pg_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir/socket -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" \
    start >/dev/null
}

# stop_postgres DIR: stops the cluster started in DIR and removes it.
stop_postgres() {
  local dir=$1 bin
  bin=$(pg_bin) || return 0
  [ -d "$dir/data" ] && as_pg_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

# start_redis PORT: a Redis without persistence and with 64 databases
# (tests take one each).
start_redis() {
  local port=$1
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --databases 64 --daemonize yes \
    --logfile "/tmp/dol-redis-$port.log" >/dev/null
  for _ in $(seq 1 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis-server on port $port did not start (see /tmp/dol-redis-$port.log)" >&2
  return 1
}

# stop_redis PORT
stop_redis() {
  redis-cli -p "$1" shutdown nosave >/dev/null 2>&1 || true
  rm -f "/tmp/dol-redis-$1.log"
}
