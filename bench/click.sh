#!/usr/bin/env bash
# The click endpoint under load, beside nginx answering a static 302, in the same run:
#   channeld   GET /c/<token>: token verified, message looked up, link resolved, the click
#              made durable (appended to the hit journal and fdatasync-ed) before the 302, and
#              recorded in PostgreSQL (default durability) right after by the journal's applier;
#              on http.public_listen (the event-driven front) and on http.listen (httplib)
#   nginx      `return 302` from a location, no I/O
# Both under `wrk --latency` on loopback with the same threads, connections, duration and Lua
# script, which rotates over TOKENS click tokens of messages really sent (one per contact). After
# each run the script waits until the daemon's channeld_hits_waiting is 0 (PostgreSQL has every
# journaled click), reports how long that took after wrk stopped ("catch-up"), and checks that
# PostgreSQL recorded at least as many clicks as wrk got 302s.
# The tokens repeat (every message is clicked many times), so after the first pass each link
# comes from the Tracker's cache: the cost measured is the repeat click's; a first click adds a
# database read and a render on the lookup threads.
#
#   bench/click.sh                      THREADS=2 CONNECTIONS=32 DURATION=15s TOKENS=200 HTTPLIB=1
#                                       REPEAT=1 (more alternating click/nginx pairs, median)
#
# Needs wrk, nginx (nginx-light) and scripts/bootstrap.sh's packages. CHANNELD_BUILD_DIR
# (build-bench), CHANNELD_BIN, KEEP=1 as in bench/latency.sh; PERF=1 prints channeld's top
# symbols during the click run (perf). STATE_DIR=/dev/shm/x puts paths.state (the hit journal)
# there: on tmpfs, what the disk's flush costs the click shows (not a configuration to run).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-15s}
TOKENS=${TOKENS:-200}
PARTNERS=${PARTNERS:-1}
PARALLEL=${PARALLEL:-4}
build=${CHANNELD_BUILD_DIR:-build-bench}
die() { echo "click: $*" >&2; exit 1; }
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || die "$tool is not installed (apt-get install wrk nginx-light)"
done

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHANNELD_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target channeld >/dev/null
channeld=${CHANNELD_BIN:-$repo/$build/daemon/channeld}
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

work=$(mktemp -d /tmp/channeld-click.XXXXXX)
chmod 755 "$work"
source "$repo/bench/site.sh"
daemon_pid=""
cleanup() {
  set +e
  [ -n "$daemon_pid" ] && kill "$daemon_pid" && wait "$daemon_pid"
  [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")"
  stop_sink
  scripts/pg-cluster.sh stop "$work/pg"
  if [ "${KEEP:-0}" = 1 ]; then echo "click: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
start_pg

# Send TOKENS messages (one partner, TOKENS contacts) so that every click names a real message.
sink_port=$(scripts/free-port.sh 25500)
start_sink 0 "$sink_port"
make_site "$work/site" "$TOKENS" "$sink_port"
fresh_db
"$channeld" --config "$work/site/channeld.toml" --until-idle >/dev/null 2>"$work/send.log" ||
  die "sending failed, see $work/send.log (KEEP=1)"
stop_sink
[ "$(psql_q "SELECT count(*) FROM outbox WHERE state = 'sent'")" -eq "$TOKENS" ] || die "not every message was sent"

# One click URL per message: the first tracked link of the message `preview` renders for each
# contact (the same token the sent message carried: tokens depend on the message and the secret).
: >"$work/paths"
for ((i = 0; i < TOKENS; i++)); do
  "$channeld" preview --config "$work/site/channeld.toml" --kit bench --partner p00 \
    --contact "contact$i@p00.example.com" --out "$work/preview-$i" >/dev/null 2>&1
  grep -o 'https://mkt.vendor.example/c/[A-Za-z0-9_.-]*' "$work"/preview-$i/*.html | head -1 |
    sed 's|https://mkt.vendor.example||' >>"$work/paths"
  rm -rf "$work/preview-$i"
done
[ "$(grep -c '^/c/' "$work/paths")" -eq "$TOKENS" ] || die "could not collect $TOKENS click tokens"

http_port=$(scripts/free-port.sh 28100)
public_port=$(scripts/free-port.sh 28300)
sed -i "s|^listen = \"127.0.0.1:0\"|listen = \"127.0.0.1:$http_port\"\npublic_listen = \"127.0.0.1:$public_port\"|" \
  "$work/site/channeld.toml"
"$channeld" --config "$work/site/channeld.toml" >"$work/daemon.out" 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 200); do
  curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$http_port/readyz" >/dev/null || die "the daemon did not get ready, see $work/daemon.log"
first=$(head -1 "$work/paths")
for port in "$http_port" "$public_port"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$first")" = 302 ] ||
    die "a click on port $port did not answer 302"
done
recorded() { psql_q "SELECT COALESCE(sum(hits), 0) FROM delivery_event WHERE kind IN ('clicked', 'clicked_by_scanner')"; }

cat >"$work/rotate.lua" <<EOF
local paths = {}
for line in io.lines("$work/paths") do paths[#paths + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
local non302 = 0
response = function(status) if status ~= 302 then non302 = non302 + 1 end end
done = function(summary, latency, requests)
  io.write(string.format("click: requests %d non302 %d\n", summary.requests, non302))
end
EOF

nginx_port=$(scripts/free-port.sh 28200)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$nginx_port;
    location /c/ { return 302 https://p00.example/; }
  }
}
EOF
/usr/sbin/nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"

# wrk's summary: requests/s and the 99th percentile (with --latency).
measure() {
  local label=$1 url=$2; shift 2
  local out; out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")
  echo "$out" >"$work/wrk-$label.txt"
  local rps p99 p50
  rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
  p50=$(awk '/^ +50%/ { print $2 }' <<<"$out")
  p99=$(awk '/^ +99%/ { print $2 }' <<<"$out")
  echo "$label $rps $p50 $p99"
}
waiting() {
  curl -sf "http://127.0.0.1:$http_port/metrics" | awk '/^channeld_hits_waiting / { print $2 }'
}
# One click run: wrk rotating over the tokens, then the wait until PostgreSQL has every click
# (the journal's applier caught up), then the check that every click answered with a 302 was
# recorded (the rows are there). Prints "label rps p50 p99 clicks catch-up-seconds".
click_run() {
  local label=$1 port=$2 before result requests non302 clicks stopped caught
  before=$(recorded)
  result=$(measure "$label" "http://127.0.0.1:$port" -s "$work/rotate.lua")
  stopped=$(date +%s.%N)
  for _ in $(seq 1200); do
    [ "$(waiting)" = 0 ] && break
    sleep 0.05
  done
  [ "$(waiting)" = 0 ] || die "$label: PostgreSQL did not catch up with the journal in 60 s"
  caught=$(awk -v a="$stopped" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  read -r _ _ requests _ non302 < <(grep '^click: requests' "$work/wrk-$label.txt")
  clicks=$(( $(recorded) - before ))
  [ "$non302" -eq 0 ] || die "$label: $non302 of $requests clicks were not answered 302, see $work/daemon.log"
  [ "$clicks" -ge "$requests" ] || die "$label: wrk got $requests redirects but PostgreSQL recorded $clicks clicks"
  echo "$result $clicks $caught"
}
# One nginx run, under the same wrk script as channeld's click runs (the same rotating /c/<token>
# paths, the same per-response check): the script costs wrk CPU on each request, and on two
# cores wrk's CPU is the servers'. Prints "label rps p50 p99".
nginx_run() {
  local label=$1 result
  result=$(measure "$label" "http://127.0.0.1:$nginx_port" -s "$work/rotate.lua")
  grep -q '^click: requests [0-9]* non302 0$' "$work/wrk-$label.txt" || die "$label answered other than 302"
  echo "$result"
}
perf_pid=""
if [ "${PERF:-0}" = 1 ]; then
  perf record -F 499 -g -p "$daemon_pid" -o "$work/perf.data" 2>/dev/null &
  perf_pid=$!
fi
pub=$(click_run public "$public_port")
if [ -n "$perf_pid" ]; then
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | cut -c1-120 |
    grep -v '^#' | grep '%' | head -25 >"$work/perf-top.txt" || true
  echo "click: channeld's top symbols during the click run on the public port:"; cat "$work/perf-top.txt"
  echo "click: channeld's threads (share of its samples):"
  perf report -i "$work/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null |
    grep -v '^#' | grep '%' | head -10 || true
fi
ng=$(nginx_run nginx)
# The HTTP servers alone (no database, no rendering): what the click costs beyond them.
phz=$(measure public-healthz "http://127.0.0.1:$public_port/healthz")
# httplib's own port, for comparison (HTTPLIB=0 skips it).
if [ "${HTTPLIB:-1}" = 1 ]; then
  ch=$(click_run httplib "$http_port")
  hz=$(measure healthz "http://127.0.0.1:$http_port/healthz")
  read -r _ ch_rps ch_p50 ch_p99 ch_clicks ch_caught <<<"$ch"
  read -r _ hz_rps hz_p50 hz_p99 <<<"$hz"
fi
read -r _ pub_rps pub_p50 pub_p99 pub_clicks pub_caught <<<"$pub"
read -r _ ng_rps ng_p50 ng_p99 <<<"$ng"
read -r _ phz_rps phz_p50 phz_p99 <<<"$phz"
pct() { awk -v a="$1" -v b="$ng_rps" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }

echo
echo "PostgreSQL: fsync=$(psql_q 'SHOW fsync'), synchronous_commit=$(psql_q 'SHOW synchronous_commit'); wrk -t$THREADS -c$CONNECTIONS -d$DURATION; $TOKENS messages; $(nproc) cores"
echo "| server | requests/s | p50 | p99 | vs nginx |"
echo "|---|---:|---:|---:|---:|"
echo "| channeld public_listen GET /c/<token> (journaled before the 302; $pub_clicks clicks in PostgreSQL ${pub_caught} s after wrk stopped) | $pub_rps | $pub_p50 | $pub_p99 | $(pct "$pub_rps") |"
echo "| channeld public_listen GET /healthz (the front only) | $phz_rps | $phz_p50 | $phz_p99 | $(pct "$phz_rps") |"
if [ "${HTTPLIB:-1}" = 1 ]; then
  echo "| channeld listen (httplib) GET /c/<token> (journaled before the 302; $ch_clicks clicks in PostgreSQL ${ch_caught} s after wrk stopped) | $ch_rps | $ch_p50 | $ch_p99 | $(pct "$ch_rps") |"
  echo "| channeld listen (httplib) GET /healthz | $hz_rps | $hz_p50 | $hz_p99 | $(pct "$hz_rps") |"
fi
echo "| nginx return 302 | $ng_rps | $ng_p50 | $ng_p99 | 100% |"

# On a shared VM both servers' rates drift by a third between runs minutes apart: REPEAT=N
# measures N more pairs back to back (channeld's click, then nginx) and prints the median ratio.
if [ "${REPEAT:-1}" -gt 1 ]; then
  echo
  echo "| pair | channeld click requests/s | p99 | nginx requests/s | p99 | channeld vs nginx |"
  echo "|---|---:|---:|---:|---:|---:|"
  ratios=()
  for ((i = 1; i <= REPEAT; i++)); do
    pair_click=$(click_run "public-$i" "$public_port")
    pair_nginx=$(nginx_run "nginx-$i")
    read -r _ a _ a99 _ _ <<<"$pair_click"
    read -r _ b _ b99 <<<"$pair_nginx"
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f", 100 * a / b }')
    ratios+=("$ratio")
    echo "| $i | $a | $a99 | $b | $b99 | $ratio% |"
  done
  echo "median of $REPEAT pairs: channeld at $(printf '%s\n' "${ratios[@]}" | sort -n |
    awk '{ r[NR] = $1 } END { print r[int((NR + 1) / 2)] }')% of nginx"
fi
