#!/usr/bin/env bash
# A private, throw-away PostgreSQL 15 cluster for tests, benchmarks and the quick start.
#   scripts/pg-cluster.sh start DIR PORT   initdb (once) and start; prints the connection string
#   scripts/pg-cluster.sh stop DIR
# PG_DURABLE=1 starts it with PostgreSQL's default durability (fsync, synchronous_commit and
# full_page_writes on), as the benchmarks' headline figures require.
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?cluster directory}
port=${3:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then as_pg=(runuser -u postgres --); fi

case "$cmd" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -A trust -U channeld -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1
    fi
    if "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      # Already running (a second quick start, say): keep it, on the port it has.
      port=$(sed -n 4p "$dir/data/postmaster.pid")
    else
      # fsync off: a test cluster trades crash safety for speed; the daemon's durability is
      # about its own crashes (kill -9), which PostgreSQL survives without fsync.
      durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
      [ "${PG_DURABLE:-0}" = 1 ] && durability=""
      "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $durability -c max_connections=200" start >/dev/null
    fi
    "$bin/psql" -h 127.0.0.1 -p "$port" -U channeld -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='channeld'" | grep -q 1 ||
      "$bin/createdb" -h 127.0.0.1 -p "$port" -U channeld channeld
    echo "host=127.0.0.1 port=$port user=channeld dbname=channeld"
    ;;
  stop)
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
