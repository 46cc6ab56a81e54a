#!/usr/bin/env bash
# Throughput against relays that take a while to answer the end of DATA, with PostgreSQL at its
# default durability (fsync, synchronous_commit, full_page_writes on). For each delay in DELAYS
# (milliseconds), in the same run and against the same sink:
#   channeld        `channeld --until-idle`, N messages of ~10 KB across 50 partners,
#                   smtp.max_connections = PARALLEL
#   smtp-source     Postfix's generator, `smtp-source -s PARALLEL -d`, the same N and size
#   bare libcurl    bench_bare_curl_smtp (at 0 ms only: the single multi handle it drives is
#                   exactly what a slow relay serialises)
# The sink is Postfix's smtp-sink at 0 ms and bench/delay_sink.py otherwise (smtp-sink can delay
# the DATA command, not the end of the data, and only in whole seconds).
#
#   bench/latency.sh                      delays 0 10 50 200, a few minutes
#   DELAYS="50" N_50=2000 bench/latency.sh
#
# Settings (environment): DELAYS ("0 10 50 200"), N_<delay> (messages per delay: 20000, 6000,
# 3000, 1600 by default: about 10-20 s each at the targets), PARTNERS (50), PARALLEL (16),
# CHANNELD_BUILD_DIR (build-bench), KEEP=1 keeps the work folder. Needs scripts/bootstrap.sh's
# packages (postfix for smtp-sink and smtp-source, python3).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
DELAYS=${DELAYS:-0 10 50 200}
PARTNERS=${PARTNERS:-50}
PARALLEL=${PARALLEL:-16}
build=${CHANNELD_BUILD_DIR:-build-bench}
die() { echo "latency: $*" >&2; exit 1; }
n_for() { local v="N_$1"; local d; case $1 in 0) d=20000 ;; 10) d=6000 ;; 50) d=3000 ;; *) d=1600 ;; esac; echo "${!v:-$d}"; }

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHANNELD_BENCH=ON >/dev/null
cmake --build "$build" -j2 --target channeld bench_bare_curl_smtp >/dev/null
channeld=$repo/$build/daemon/channeld
bare=$repo/$build/bench/bench_bare_curl_smtp
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

work=$(mktemp -d /tmp/channeld-latency.XXXXXX)
chmod 755 "$work"
sink_pid=""
stop_sink() {
  [ -n "$sink_pid" ] || return 0
  kill "$sink_pid" 2>/dev/null || true
  wait "$sink_pid" 2>/dev/null || true
  sink_pid=""
}
cleanup() {
  set +e
  stop_sink
  scripts/pg-cluster.sh stop "$work/pg"
  if [ "${KEEP:-0}" = 1 ]; then echo "latency: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

pg_port=$(scripts/free-port.sh 55700)
conninfo=$(PG_DURABLE=1 scripts/pg-cluster.sh start "$work/pg" "$pg_port")
psql_q() { "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U channeld -d channeld -tAc "$1"; }
[ "$(psql_q 'SHOW fsync')" = on ] && [ "$(psql_q 'SHOW synchronous_commit')" = on ] ||
  die "PostgreSQL is not at its default durability"
fresh_db() {
  "$pgbin/dropdb" -h 127.0.0.1 -p "$pg_port" -U channeld --if-exists channeld
  "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U channeld channeld
}

# The site: PARTNERS gold MSP partners, one kit whose message renders to about 10 KB (the same
# paragraph as bench/run.sh, 12 of them).
make_site() {
  local dir=$1 per=$2 sink_port=$3
  rm -rf "$dir"
  mkdir -p "$dir/partners" "$dir/campaigns/bench"
  cp -r "$repo/templates" "$dir/templates"
  echo "bench-link-secret-0123456789abcdef" >"$dir/link.secret"
  cat >"$dir/channeld.toml" <<EOF
[database]
url = "$conninfo"
[paths]
campaigns = "campaigns"
templates = "templates"
partners = "partners"
claims = "claims"
state = "state"
[http]
listen = "127.0.0.1:0"
public_url = "https://mkt.vendor.example"
link_secret_file = "link.secret"
[smtp]
url = "smtp://127.0.0.1:$sink_port"
from_address = "partners@mkt.vendor.example"
max_connections = $PARALLEL
[vendor]
name = "Vendor Inc."
postal_address = "1 Vendor Way, Springfield, IL 62701, USA"
website = "https://vendor.example"
[limits]
messages_per_second = 0
per_partner_per_second = 0
EOF
  for ((p = 0; p < PARTNERS; p++)); do
    local id; id=$(printf 'p%02d' "$p")
    cat >"$dir/partners/$id.toml" <<EOF
id = "$id"
name = "Partner $id Solutions"
tier = "gold"
type = "msp"
region = "NA"
timezone = "America/Chicago"
contacts = "$id.csv"
[branding]
logo_url = "https://$id.example/logo.png"
primary_color = "#0a5fff"
website = "https://$id.example"
postal_address = "200 Main St, Austin, TX 78701, USA"
sender_name = "Partner $id"
reply_to = "marketing@$id.example"
EOF
    awk -v id="$id" -v n="$per" 'BEGIN { print "email,first_name,last_name,company,industry"
      for (i = 0; i < n; i++) printf "contact%d@%s.example.com,First%d,Last%d,Customer %d Ltd,retail\n", i, id, i, i, i }' \
      >"$dir/partners/$id.csv"
  done
  cat >"$dir/campaigns/bench/kit.toml" <<'EOF'
id = "bench"
name = "Latency benchmark"
version = 1
expires = 2099-12-31
[audience]
tiers = ["gold"]
types = ["msp"]
[schedule]
start = 2020-01-01T09:00:00
window = { days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], from = "00:00", to = "24:00" }
[[steps]]
id = "announce"
channel = "email"
delay = "0d"
subject = "{{partner.name}} and {{vendor.name}}: your cloud move"
html = "body.html.mustache"
text = "body.txt.mustache"
EOF
  local paragraph='<p style="margin:0 0 16px 0;font-family:Arial,Helvetica,sans-serif;color:#374151;">{{contact.first_name}}, {{partner.name}} and {{vendor.name}} have helped teams like {{contact.company}} retire ageing servers, move file shares and line-of-business applications to the cloud, and keep a rollback plan for every workload. Read more at <a href="{{partner.branding.website}}" style="color:{{partner.branding.primary_color}};">{{partner.branding.website}}</a>.</p>'
  { echo '<h1>Hello {{contact.first_name}}</h1>'; for ((i = 0; i < 12; i++)); do echo "$paragraph"; done; } \
    >"$dir/campaigns/bench/body.html.mustache"
  { echo 'Hello {{contact.first_name}},'; for ((i = 0; i < 6; i++)); do
      echo; echo '{{partner.name}} and {{vendor.name}} help teams like {{contact.company}} move to the'
      echo 'cloud with a rollback plan for every workload: {{partner.branding.website}}'; done; } \
    >"$dir/campaigns/bench/body.txt.mustache"
}

start_sink() {
  local delay=$1 port=$2
  if [ "$delay" = 0 ]; then
    local user=(); [ "$(id -u)" -eq 0 ] && user=(-u postfix)
    /usr/sbin/smtp-sink "${user[@]}" "127.0.0.1:$port" 2000 >"$work/sink-$delay.out" 2>&1 &
  else
    /usr/bin/python3 "$repo/bench/delay_sink.py" "$port" "$delay" "$work/sink-$delay.stats" \
      >"$work/sink-$delay.out" 2>&1 &
  fi
  sink_pid=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return; sleep 0.1; done
  die "the sink did not start"
}

rows=()
for delay in $DELAYS; do
  n=$(n_for "$delay")
  [ $((n % PARTNERS)) -eq 0 ] || die "N_$delay ($n) must be a multiple of PARTNERS"
  port=$(scripts/free-port.sh 25300)
  start_sink "$delay" "$port"
  make_site "$work/site" $((n / PARTNERS)) "$port"
  "$channeld" preview --config "$work/site/channeld.toml" --kit bench --partner p00 --out "$work/preview" >/dev/null
  eml=$(ls "$work"/preview/*.eml | head -1)
  size=$(stat -c %s "$eml")

  fresh_db
  t0=$(date +%s.%N)
  "$channeld" --config "$work/site/channeld.toml" --until-idle >"$work/channeld-$delay.out" 2>"$work/channeld-$delay.log" ||
    die "channeld failed, see $work/channeld-$delay.log (KEEP=1)"
  t1=$(date +%s.%N)
  read -r sent span < <(psql_q "SELECT count(*), extract(epoch FROM max(sent_at) - min(sent_at)) + 1
                                FROM outbox WHERE state = 'sent'" | tr '|' ' ')
  [ "$sent" -eq "$n" ] || die "channeld sent $sent of $n at $delay ms, see $work/channeld-$delay.log"
  ch_wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  ch_rate=$(awk -v n="$n" -v s="$span" 'BEGIN { printf "%.0f", n / s }')

  t0=$(date +%s.%N)
  /usr/sbin/smtp-source -s "$PARALLEL" -m "$n" -l "$size" -d "127.0.0.1:$port"
  t1=$(date +%s.%N)
  src_rate=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')

  bare_rate="-"
  if [ "$delay" = 0 ]; then
    line=$("$bare" --url "smtp://127.0.0.1:$port" --messages "$n" --parallel "$PARALLEL" --message "$eml")
    bare_rate=$(sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p' <<<"$line" | awk '{ printf "%.0f", $1 }')
  fi
  stop_sink
  open="-"; [ -f "$work/sink-$delay.stats" ] && open=$(awk '{ print $4 }' "$work/sink-$delay.stats")
  pct_src=$(awk -v a="$ch_rate" -v b="$src_rate" 'BEGIN { printf "%.0f", 100 * a / b }')
  pct_bare="-"; [ "$bare_rate" != "-" ] && pct_bare=$(awk -v a="$ch_rate" -v b="$bare_rate" 'BEGIN { printf "%.0f%%", 100 * a / b }')
  row=$(printf '| %4s ms | %6s | %5s B | %7s | %6ss | %11s | %7s | %4s%% | %6s | %s |' \
    "$delay" "$n" "$size" "$ch_rate" "$ch_wall" "$src_rate" "$bare_rate" "$pct_src" "$pct_bare" "$open")
  rows+=("$row")
  echo "latency: $row"
done

echo
echo "PostgreSQL: fsync=$(psql_q 'SHOW fsync'), synchronous_commit=$(psql_q 'SHOW synchronous_commit'), full_page_writes=$(psql_q 'SHOW full_page_writes'); parallelism $PARALLEL; $PARTNERS partners"
echo "| delay   | N      | message | channeld msg/s (sending span) | channeld wall | smtp-source -d msg/s | bare libcurl msg/s | vs smtp-source | vs bare | max open at sink |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
