# Shared by bench/latency.sh and bench/scale.sh: a private PostgreSQL cluster at its default
# durability, the benchmark site (PARTNERS gold MSP partners, one kit whose message renders to
# about 10 KB) and the sinks. Source it after setting repo, work, pgbin, PARTNERS and PARALLEL
# and defining die().

sink_pid=""
stop_sink() {
  [ -n "$sink_pid" ] || return 0
  kill "$sink_pid" 2>/dev/null || true
  wait "$sink_pid" 2>/dev/null || true
  sink_pid=""
}

# start_pg: a private cluster in $work/pg; sets pg_port and conninfo.
start_pg() {
  pg_port=$(scripts/free-port.sh 55700)
  conninfo=$(PG_DURABLE=1 scripts/pg-cluster.sh start "$work/pg" "$pg_port")
  [ "$(psql_q 'SHOW fsync')" = on ] && [ "$(psql_q 'SHOW synchronous_commit')" = on ] ||
    die "PostgreSQL is not at its default durability"
}
psql_q() { "$pgbin/psql" -h 127.0.0.1 -p "$pg_port" -U channeld -d channeld -tAc "$1"; }
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
state = "${STATE_DIR:-state}"
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

