#!/usr/bin/env bash
# End-to-end throughput and memory of channeld, side by side with two ceilings, all against
# Postfix's smtp-sink on 127.0.0.1 (docs/performance.md has the figures and how to read them):
#   channeld        render + durable PostgreSQL outbox + SMTP + recorded outcome, N messages
#                   across PARTNERS partners, `channeld --until-idle` under /usr/bin/time -v
#   bare libcurl    bench_bare_curl_smtp: the same libcurl multi loop, parallelism and connection
#                   reuse, sending channeld's own rendered .eml N times; no database, no rendering
#   smtp-source -d  Postfix's load generator, 16 sessions, one message per connection
# then the memory runs: one partner of 10,000 and one of 1,000,000 contacts, peak RSS of each.
#
#   bench/run.sh                          the full run (100,000 messages of ~10 KB, 50 partners)
#   N=10000 MEMORY_CONTACTS=10000 bench/run.sh       a quick run (about a minute)
#
# Settings (environment): N (100000), PARTNERS (50), SIZE (10240: target bytes of a rendered
# message), PARALLEL (16: smtp.max_connections and the ceilings' parallelism), REPEAT (1: the
# side-by-side is repeated and medians reported), MEMORY_CONTACTS ("10000 1000000"; "" skips the
# memory runs), MEMORY_SIZE (4096: message size of the memory runs, so a million messages take
# minutes, not an hour; the bundled layout alone renders to about 3.9 KB), CHANNELD_BUILD_DIR
# (build-bench), CHANNELD_BIN (another channeld binary to measure), PERF=1 (record the first
# channeld run system-wide with perf and print where the CPU went), KEEP=1 keeps the work folder.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

N=${N:-100000}
PARTNERS=${PARTNERS:-50}
SIZE=${SIZE:-10240}
PARALLEL=${PARALLEL:-16}
REPEAT=${REPEAT:-1}
MEMORY_CONTACTS=${MEMORY_CONTACTS-10000 1000000}
MEMORY_SIZE=${MEMORY_SIZE:-4096}
build=${CHANNELD_BUILD_DIR:-build-bench}

die() { echo "bench: $*" >&2; exit 1; }
[ $((N % PARTNERS)) -eq 0 ] || die "N ($N) must be a multiple of PARTNERS ($PARTNERS)"
for tool in /usr/sbin/smtp-sink /usr/sbin/smtp-source; do
  [ -x "$tool" ] || die "$tool is missing: run scripts/bootstrap.sh (package postfix)"
done
if [ ! -x /usr/bin/time ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq time >/dev/null
fi

# ---- build --------------------------------------------------------------------------------
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCHANNELD_BENCH=ON \
  -DCHANNELD_TESTS=OFF >/dev/null
cmake --build "$build" -j2 --target channeld bench_bare_curl_smtp >/dev/null
channeld=${CHANNELD_BIN:-$repo/$build/daemon/channeld}
bare=$repo/$build/bench/bench_bare_curl_smtp
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# ---- peers: smtp-sink and a private PostgreSQL cluster ----------------------------------
work=$(mktemp -d /tmp/channeld-bench.XXXXXX)
chmod 755 "$work"
sink_pid=""
cleanup() {
  set +e
  [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
  scripts/pg-cluster.sh stop "$work/pg"
  if [ "${KEEP:-0}" = 1 ]; then echo "bench: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

sink_port=$(scripts/free-port.sh 25250)
# -c: running counters on stdout; no -w/-W: every reply is immediate. smtp-sink must drop root.
sink_user=(); [ "$(id -u)" -eq 0 ] && sink_user=(-u postfix)
/usr/sbin/smtp-sink -c "${sink_user[@]}" "127.0.0.1:$sink_port" 2000 >"$work/sink.out" 2>&1 &
sink_pid=$!
pg_port=$(scripts/free-port.sh 55600)
conninfo=$(scripts/pg-cluster.sh start "$work/pg" "$pg_port")
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null && break; sleep 0.1; done
psql_q() { "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U channeld -d channeld -tAc "$1"; }
fresh_db() {
  "$pgbin/dropdb" -h 127.0.0.1 -p "$pg_port" -U channeld --if-exists channeld
  "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U channeld channeld
}

# CPU seconds (user+system) of a process and, for the postmaster, of its children: exited
# backends are in its cumulative child times, live ones (walwriter, checkpointer) are added.
clk=$(getconf CLK_TCK)
cpu_of() {
  local pid=$1 total
  total=$(awk '{print $14+$15+$16+$17}' "/proc/$pid/stat")
  for child in $(pgrep -P "$pid" || true); do
    total=$((total + $(awk '{print $14+$15}' "/proc/$child/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
postmaster=$(head -1 "$work/pg/data/postmaster.pid")
secs() { awk -v t="$1" -v c="$clk" 'BEGIN{printf "%.1f", t/c}'; }

# ---- the site: config, partners with contacts, one kit ----------------------------------
zones=(America/Chicago Europe/Berlin Asia/Tokyo America/New_York Europe/London
       Australia/Sydney America/Los_Angeles Asia/Kolkata America/Sao_Paulo Africa/Johannesburg)

# A paragraph of the kit's HTML body; every one names the contact, partner and vendor, so the
# renderer does real substitution work throughout the message, not one lookup and a blob.
paragraph='<p style="margin:0 0 16px 0;font-family:Arial,Helvetica,sans-serif;color:#374151;">{{contact.first_name}}, {{partner.name}} and {{vendor.name}} have helped teams like {{contact.company}} retire ageing servers, move file shares and line-of-business applications to the cloud, and keep a rollback plan for every workload. Read more at <a href="{{partner.branding.website}}" style="color:{{partner.branding.primary_color}};">{{partner.branding.website}}</a>.</p>'

# make_site DIR PARTNERS CONTACTS_PER_PARTNER PARAGRAPHS
make_site() {
  local dir=$1 partners=$2 per=$3 paragraphs=$4
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
  local p id
  for ((p = 0; p < partners; p++)); do
    id=$(printf 'p%02d' "$p")
    cat >"$dir/partners/$id.toml" <<EOF
id = "$id"
name = "Partner $id Solutions"
tier = "gold"
type = "msp"
region = "NA"
timezone = "${zones[$((p % ${#zones[@]}))]}"
contacts = "$id.csv"
[branding]
logo_url = "https://$id.example/logo.png"
primary_color = "#0a5fff"
website = "https://$id.example"
postal_address = "200 Main St, Austin, TX 78701, USA"
sender_name = "Partner $id"
reply_to = "marketing@$id.example"
EOF
    awk -v id="$id" -v n="$per" 'BEGIN {
      print "email,first_name,last_name,company,industry"
      for (i = 0; i < n; i++)
        printf "contact%d@%s.example.com,First%d,Last%d,Customer %d Ltd,retail\n", i, id, i, i, i
    }' >"$dir/partners/$id.csv"
  done
  cat >"$dir/campaigns/bench/kit.toml" <<'EOF'
id = "bench"
name = "Throughput benchmark"
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
  {
    echo '<h1 style="margin:0 0 16px 0;">Hello {{contact.first_name}}</h1>'
    for ((i = 0; i < paragraphs; i++)); do echo "$paragraph"; done
  } >"$dir/campaigns/bench/body.html.mustache"
  {
    echo 'Hello {{contact.first_name}},'
    for ((i = 0; i < paragraphs / 2; i++)); do
      echo
      echo '{{partner.name}} and {{vendor.name}} help teams like {{contact.company}} move to the'
      echo 'cloud with a rollback plan for every workload: {{partner.branding.website}}'
    done
  } >"$dir/campaigns/bench/body.txt.mustache"
}

# rendered_size DIR: bytes of the .eml channeld renders for the first partner's first contact;
# leaves it in DIR/preview/.
rendered_size() {
  rm -rf "$1/preview"
  "$channeld" preview --config "$1/channeld.toml" --kit bench --partner p00 --out "$1/preview" >/dev/null
  stat -c %s "$1"/preview/*.eml
}

# paragraphs_for BYTES: paragraph count whose rendered message is about BYTES (a linear fit over
# two previews of a one-partner site).
paragraphs_for() {
  local probe=$work/probe s0 s8
  make_site "$probe" 1 1 0 && s0=$(rendered_size "$probe")
  make_site "$probe" 1 1 8 && s8=$(rendered_size "$probe")
  awk -v want="$1" -v s0="$s0" -v s8="$s8" 'BEGIN { k = (want - s0) * 8 / (s8 - s0); print (k < 0 ? 0 : int(k + 0.5)) }'
}

# run_channeld SITE TAG: a fresh database, then `channeld --until-idle` under /usr/bin/time.
# Sets: ch_sent ch_wall ch_rss_mb ch_cpu ch_pg_cpu ch_span.
run_channeld() {
  local site=$1 tag=$2 pg_before
  fresh_db
  pg_before=$(cpu_of "$postmaster")
  local perf_pid=""
  if [ "${PERF:-0}" = 1 ] && [ "$tag" = throughput-1 ]; then
    # System-wide, so PostgreSQL's and smtp-sink's share of the two cores shows too. cpu-clock:
    # VMs often lack hardware counters.
    perf record -a -e cpu-clock -F 499 -o "$work/perf.data" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 1
  fi
  /usr/bin/time -v -o "$work/$tag.time" "$channeld" --config "$site/channeld.toml" --until-idle \
    >"$work/$tag.out" 2>"$work/$tag.log" || die "channeld failed, see $work/$tag.log (KEEP=1)"
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" && wait "$perf_pid" || true
    # perf's --comm filter drops samples in shared libraries, so filter the sorted text instead.
    perf_top() { perf report -i "$work/perf.data" --stdio --sort "$1" 2>/dev/null | grep -v '^#' | grep . || true; }
    perf_top comm,dso | head -16 >"$work/perf-by-process.txt" || true
    perf_top pid | head -12 >"$work/perf-by-thread.txt" || true
    perf_top comm,dso,sym | awk '$2 == "channeld"' | head -40 | cut -c1-160 >"$work/perf-channeld-by-symbol.txt" || true
    perf_top comm,dso,sym | awk '$2 == "postgres"' | head -20 | cut -c1-160 >"$work/perf-postgres-by-symbol.txt" || true
  fi
  sleep 0.3  # let the backends' exit reach the postmaster's child times
  ch_pg_cpu=$(secs $(($(cpu_of "$postmaster") - pg_before)))
  ch_wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0;
                          for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$work/$tag.time")
  ch_rss_mb=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$work/$tag.time")
  ch_cpu=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.1f", u + s }' "$work/$tag.time")
  # sent_at has whole seconds, so the sending span is taken as last - first + 1 seconds: at most
  # a second too long, which understates the steady rate by up to 1/span.
  read -r ch_sent ch_span < <(psql_q "SELECT count(*), extract(epoch FROM max(sent_at) - min(sent_at)) + 1
                                      FROM outbox WHERE state = 'sent'" | tr '|' ' ')
}

# Keeps a line for the report and shows it now, so a long run shows its progress.
note() { summaries+=("$1"); echo "bench: $1"; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
median() { tr ' ' '\n' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# ---- throughput: channeld, bare libcurl, smtp-source -d -------------------------------------
echo "bench: calibrating a ~$SIZE-byte message"
paragraphs=$(paragraphs_for "$SIZE")
site=$work/site
make_site "$site" "$PARTNERS" $((N / PARTNERS)) "$paragraphs"
size=$(rendered_size "$site")
eml=$(ls "$site"/preview/*.eml)
echo "bench: $N messages of $size bytes (html+text, $paragraphs paragraphs) to $PARTNERS partners, parallelism $PARALLEL"

ch_all=() ch_steady=() bare_all=() source_all=() ch_rss_all=() summaries=()
for ((r = 1; r <= REPEAT; r++)); do
  run_channeld "$site" "throughput-$r"
  [ "$ch_sent" -eq "$N" ] || die "channeld sent $ch_sent of $N, see $work/throughput-$r.log"
  ch_all+=("$(rate "$N" "$ch_wall")") ch_steady+=("$(rate "$N" "$ch_span")") ch_rss_all+=("$ch_rss_mb")
  note "run $r: channeld wall ${ch_wall}s, sending ${ch_span}s, daemon CPU ${ch_cpu}s, PostgreSQL CPU ${ch_pg_cpu}s, peak RSS ${ch_rss_mb} MB"

  line=$("$bare" --url "smtp://127.0.0.1:$sink_port" --messages "$N" --parallel "$PARALLEL" --message "$eml")
  bare_all+=("$(sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p' <<<"$line")")
  note "run $r: $line"

  t0=$(date +%s.%N)
  /usr/sbin/smtp-source -s "$PARALLEL" -m "$N" -l "$size" -d "127.0.0.1:$sink_port"
  t1=$(date +%s.%N)
  source_all+=("$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')")
  note "run $r: smtp-source -s $PARALLEL -d: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')s"
done

ch_med=$(echo "${ch_all[@]}" | median)
ch_steady_med=$(echo "${ch_steady[@]}" | median)
bare_med=$(echo "${bare_all[@]}" | median)
source_med=$(echo "${source_all[@]}" | median)
rss_med=$(echo "${ch_rss_all[@]}" | median)

# ---- memory: one partner with many contacts ------------------------------------------------
memory_rows=()
if [ -n "$MEMORY_CONTACTS" ]; then
  mem_paragraphs=$(paragraphs_for "$MEMORY_SIZE")
  for contacts in $MEMORY_CONTACTS; do
    echo "bench: memory run, 1 partner with $contacts contacts"
    make_site "$work/memory" 1 "$contacts" "$mem_paragraphs"
    mem_size=$(rendered_size "$work/memory")
    run_channeld "$work/memory" "memory-$contacts"
    echo "bench: memory run done: wall ${ch_wall}s, peak RSS ${ch_rss_mb} MB"
    memory_rows+=("$(printf '| %9s contacts | %6s B | %9s | %7ss | %7s msg/s | %4s MB |' \
      "$contacts" "$mem_size" "$ch_sent" "$ch_wall" "$(rate "$ch_sent" "$ch_wall")" "$ch_rss_mb")")
  done
fi

# ---- report ---------------------------------------------------------------------------------
echo
echo "Machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
     "$(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)," \
     "Debian $(cat /etc/debian_version)"
echo "Workload: $N messages of $size bytes, $PARTNERS partners, parallelism $PARALLEL, $REPEAT run(s), medians"
printf '%s\n' "${summaries[@]}"
echo
echo "| sender                                   | msg/s  | vs bare libcurl |"
echo "|------------------------------------------|--------|-----------------|"
printf '| channeld, whole run (start-up included)  | %6s | %14s%% |\n' "$ch_med" "$(awk -v a="$ch_med" -v b="$bare_med" 'BEGIN { printf "%.0f", 100 * a / b }')"
printf '| channeld, first to last sent_at          | %6s | %14s%% |\n' "$ch_steady_med" "$(awk -v a="$ch_steady_med" -v b="$bare_med" 'BEGIN { printf "%.0f", 100 * a / b }')"
printf '| bare libcurl multi loop                  | %6s | %14s%% |\n' "$bare_med" 100
printf '| smtp-source -s %-3s -d (1 msg/connection) | %6s | %14s%% |\n' "$PARALLEL" "$source_med" "$(awk -v a="$source_med" -v b="$bare_med" 'BEGIN { printf "%.0f", 100 * a / b }')"
echo
echo "channeld peak RSS, $N messages / $PARTNERS partners: $rss_med MB"
if [ ${#memory_rows[@]} -gt 0 ]; then
  echo
  echo "| audience (1 partner) | message | sent      | wall     | whole run     | peak RSS |"
  echo "|----------------------|---------|-----------|----------|---------------|----------|"
  printf '%s\n' "${memory_rows[@]}"
fi
if [ "${PERF:-0}" = 1 ]; then
  for f in by-process by-thread channeld-by-symbol postgres-by-symbol; do
    echo; echo "perf, first channeld run, ${f//-/ }:"; cat "$work/perf-$f.txt"
  done
fi
echo "smtp-sink counters (connections, QUIT, messages): $(tr '\r' '\n' <"$work/sink.out" | grep -v '^$' | tail -1)"
