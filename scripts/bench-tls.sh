#!/usr/bin/env bash
# TLS beside plain HTTP, in one run (docs/BENCHMARKS.md, "TLS beside plain HTTP").
#
# Starts, as separate processes on loopback: a plain `latchkey serve`, a `latchkey
# serve` on TLS, a gateway following each (the second over https, serving TLS with
# HTTP/2 and HTTP/1.1), and drives them with h2load (Debian's nghttp2-client):
#   - the gateway with a Bearer JWT: plain HTTP/1.1, TLS HTTP/1.1, TLS HTTP/2 (one
#     stream a connection, as keep-alive HTTP/1.1 has one request a connection), and
#     TLS HTTP/2 with 8 streams in flight a connection;
#   - client-credentials grants at the server: plain HTTP/1.1 and TLS HTTP/1.1.
# The upstream behind both gateways is the plain server's /healthz, so the only
# difference between the gateway loads is the client side of the gateway. Loads
# alternate in rounds, so that a slow moment of the machine hits every load alike;
# the report gives each load's median over the rounds and its ratio to plain.
# Certificates are a private CA made with openssl in a temporary directory. Every
# request must succeed, or the run fails.
#
# Usage: scripts/bench-tls.sh [--duration S] [--rounds N] [--connections C]
# Needs: a release build (cargo build --release -p latchkey), h2load, openssl, curl,
# python3. LATCHKEY_BIN overrides the binary.
set -euo pipefail

duration=10
rounds=3
connections=32
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

top=$(cd "$(dirname "$0")/.." && pwd)
bin=${LATCHKEY_BIN:-$top/target/release/latchkey}
# shellcheck source=scripts/bench-lib.sh
. "$top/scripts/bench-lib.sh"
bench_require "$bin" h2load openssl curl python3

# A private CA and a certificate for 127.0.0.1 (P-256, as most deployments use).
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=latchkey-bench-ca -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj /CN=127.0.0.1 -keyout leaf.key -out leaf.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile leaf.ext -out leaf.pem 2>/dev/null

# Waits for "listening on SCHEME://ADDRESS" in LOG and prints ADDRESS.
address_of() {
  local log=$1 scheme=$2
  for _ in $(seq 1 600); do
    local found
    found=$(sed -n "s|.*listening on $scheme://\([0-9.:]*\).*|\1|p" "$log" | head -n 1)
    if [ -n "$found" ]; then echo "$found"; return 0; fi
    sleep 0.1
  done
  echo "no 'listening on $scheme://' in $log:" >&2; cat "$log" >&2; exit 1
}


# start_server NAME SCHEME [ARGS…]: starts a server, sets $address and $root.
start_server() {
  local name=$1 scheme=$2; shift 2
  RUST_LOG=warn,latchkey_server=info "$bin" serve --listen 127.0.0.1:0 \
    --data-dir "$work/$name" "$@" 2> "$work/$name.log" &
  pids+=($!)
  address=$(address_of "$work/$name.log" "$scheme")
  root=$(sed -n 's/^root key: //p' "$work/$name.log" | head -n 1)
}

start_server plain http
plain=$address; plain_root=$root
start_server tls https --tls-cert-file leaf.pem --tls-key-file leaf.key
tls=$address; tls_root=$root

# api BASE ROOT METHOD PATH BODY
api() {
  curl -q --silent --show-error --fail-with-body --cacert "$work/ca.pem" \
    -X "$3" -H "authorization: Bearer $2" -H 'content-type: application/json' \
    --data "$5" "$1$4"
}

# setup BASE ROOT: the catalogue and tokens; sets $client_id, $client_secret, $gateway_key.
setup() {
  api "$1" "$2" PUT /v1/permissions/bench:read '{}' >/dev/null
  api "$1" "$2" POST /v1/tenants '{"id":"edge"}' >/dev/null
  local created
  created=$(api "$1" "$2" POST /v1/tenants/edge/tokens \
    '{"name":"bench client","kind":"client_credentials","permissions":["bench:read"]}')
  client_id=$(json '["client_id"]' <<< "$created")
  client_secret=$(json '["client_secret"]' <<< "$created")
  gateway_key=$(api "$1" "$2" POST /v1/tenants/latchkey/tokens \
    '{"name":"bench gateway","kind":"api_key","permissions":["latchkey:introspect"]}' \
    | json '["api_key"]')
}

grant() {
  curl -q --silent --show-error --fail-with-body --cacert "$work/ca.pem" \
    -u "$2:$3" --data grant_type=client_credentials "$1/oauth/token" | json '["access_token"]'
}

setup "http://$plain" "$plain_root"
plain_id=$client_id; plain_secret=$client_secret; plain_gateway=$gateway_key
setup "https://$tls" "$tls_root"
tls_id=$client_id; tls_secret=$client_secret; tls_gateway=$gateway_key

# start_gateway NAME SCHEME CONFIG: sets $address.
start_gateway() {
  printf '%s\n' "$3" > "$work/$1.toml"
  RUST_LOG=warn,latchkey=info "$bin" gateway --config "$work/$1.toml" 2> "$work/$1.log" &
  pids+=($!)
  address=$(address_of "$work/$1.log" "$2")
}

route="
[[route]]
prefix = \"/healthz\"
upstream = \"http://$plain\"
scopes = { GET = [\"bench:read\"] }"

start_gateway gateway-plain http "listen = \"127.0.0.1:0\"
server = \"http://$plain\"
credential = \"$plain_gateway\"
$route"
gateway_plain=$address
start_gateway gateway-tls https "listen = \"127.0.0.1:0\"
server = \"https://$tls\"
tls_ca_file = \"$work/ca.pem\"
credential = \"$tls_gateway\"
tls_cert_file = \"$work/leaf.pem\"
tls_key_file = \"$work/leaf.key\"
$route"
gateway_tls=$address

plain_jwt=$(grant "http://$plain" "$plain_id" "$plain_secret")
tls_jwt=$(grant "https://$tls" "$tls_id" "$tls_secret")
# The gateways listen before their deny lists load; wait until a token gets through.
for pair in "http://$gateway_plain $plain_jwt" "https://$gateway_tls $tls_jwt"; do
  set -- $pair
  for _ in $(seq 1 100); do
    curl -q --silent --cacert "$work/ca.pem" -o /dev/null -w '%{http_code}' \
      -H "authorization: Bearer $2" "$1/healthz" | grep -q 200 && break
    sleep 0.1
  done
done
printf 'grant_type=client_credentials&client_id=%s&client_secret=%s' \
  "$plain_id" "$plain_secret" > plain.form
printf 'grant_type=client_credentials&client_id=%s&client_secret=%s' \
  "$tls_id" "$tls_secret" > tls.form

# load NAME ARGS…: one h2load run; prints "NAME req/s mean_ms", fails on any failure.
load() {
  local name=$1; shift
  local out
  out=$(h2load -c "$connections" -D "$duration" --warm-up-time 1 "$@" 2>&1) || {
    echo "$out" >&2; exit 1; }
  local rate mean failed ok total
  rate=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<< "$out")
  failed=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2/p' <<< "$out")
  ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' <<< "$out")
  total=$(sed -n 's/^requests: .*, \([0-9]*\) done.*/\1/p' <<< "$out")
  mean=$(sed -n 's/^time for request: *[0-9.]*[mu]*s *[0-9.]*[mu]*s *\([0-9.]*[mu]*s\).*/\1/p' <<< "$out")
  if [ "$failed" != "0 0" ] || [ "$ok" != "$total" ] || [ -z "$rate" ]; then
    echo "$name: not every request succeeded:" >&2; echo "$out" >&2; exit 1
  fi
  echo "$name|$rate|$mean"
}

form='Content-Type: application/x-www-form-urlencoded'
results="$work/results"
: > "$results"
for round in $(seq 1 "$rounds"); do
  echo "round $round of $rounds" >&2
  load "gateway, plain HTTP/1.1" --h1 -H "Authorization: Bearer $plain_jwt" \
    "http://$gateway_plain/healthz" >> "$results"
  load "gateway, TLS HTTP/1.1" --h1 -H "Authorization: Bearer $tls_jwt" \
    "https://$gateway_tls/healthz" >> "$results"
  load "gateway, TLS HTTP/2" -m 1 -H "Authorization: Bearer $tls_jwt" \
    "https://$gateway_tls/healthz" >> "$results"
  load "gateway, TLS HTTP/2, 8 streams a connection" -m 8 \
    -H "Authorization: Bearer $tls_jwt" "https://$gateway_tls/healthz" >> "$results"
  load "grants, plain HTTP/1.1" --h1 -d plain.form -H "$form" \
    "http://$plain/oauth/token" >> "$results"
  load "grants, TLS HTTP/1.1" --h1 -d tls.form -H "$form" \
    "https://$tls/oauth/token" >> "$results"
done

python3 - "$results" "$rounds" "$duration" "$connections" "$(nproc)" <<'EOF'
import statistics, sys
path, rounds, duration, connections, cores = sys.argv[1:]
runs = {}
for line in open(path):
    name, rate, mean = line.strip().split("|")
    runs.setdefault(name, []).append((float(rate), mean))
print(f"{cores} cores; {rounds} rounds of {duration} s a load, {connections} connections, "
      "h2load; medians of the rounds")
print()
print("| load | req/s (median) | rounds | mean latency (median round) | vs plain |")
print("| --- | --- | --- | --- | --- |")
base = {}
for name, values in runs.items():
    rates = sorted(r for r, _ in values)
    median = statistics.median(rates)
    kind = name.split(",")[0]
    if "plain" in name:
        base[kind] = median
    middle = sorted(values)[len(values) // 2][1]
    ratio = f"{median / base[kind]:.2f}x" if kind in base else ""
    shown = " / ".join(f"{r:.0f}" for r, _ in values)
    print(f"| {name} | {median:.0f} | {shown} | {middle} | {ratio} |")
EOF
