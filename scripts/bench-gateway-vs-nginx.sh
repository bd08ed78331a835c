#!/usr/bin/env bash
# The gateway against nginx's plain reverse proxy, in one run (docs/BENCHMARKS.md,
# "The gateway against nginx"). Both proxies are pinned to core 0 and stand in front of
# the same upstream (an nginx answering 200 "ok", pinned to core 1 with wrk, the load
# generator); the latchkey server that the gateway follows runs on core 1 too and is
# idle during the runs (cached JWT checks). Four workloads, rounds alternating:
#   - nginx, plain proxy, no authentication;
#   - the gateway with one JWT (the verification cache hit every time);
#   - the gateway with 10,000 distinct JWTs used round-robin (each one verified once,
#     then cached; the cache is warmed by one pass before the timed run);
#   - the gateway on a public route (no token), for the proxy's own cost.
# Prints every round and the medians, and the ratios issue 16 targets.
#
# POLICY=FILE adds a fifth workload: one JWT of a second tenant whose policy is that
# JSON (docs/API.md, "Tenant policies"), say 1,000 networks and a country rule; with
# GEOIP=FILE the gateway loads that country database (geoip_database_file). The two
# one-token columns then give the cost of the rules at the gateway, in one run:
#   POLICY=/tmp/bench-policy.json GEOIP=/tmp/bench-countries.mmdb scripts/bench-gateway-vs-nginx.sh
#
#   scripts/bench-gateway-vs-nginx.sh            # release build in target/release
#   ROUNDS=5 DURATION=10 CONNECTIONS=32 TOKENS=10000 scripts/bench-gateway-vs-nginx.sh
#
# Needs: cargo build --release -p latchkey, nginx (Debian: nginx-light), wrk, taskset,
# curl, python3; 2 cores or more. Everything listens on loopback only.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${LATCHKEY_BIN:-$repo/target/release/latchkey}"
rounds="${ROUNDS:-3}"
duration="${DURATION:-10}"
connections="${CONNECTIONS:-32}"
tokens="${TOKENS:-10000}"
policy="${POLICY:+$(realpath "$POLICY")}"
geoip="${GEOIP:+$(realpath "$GEOIP")}"
# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"
bench_require "$bin" nginx wrk taskset curl python3
cd "$work"

wait_port() {
  for _ in $(seq 1 300); do
    curl -q -s -o /dev/null "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; exit 1
}

upstream_port=$(free_port)
nginx_port=$(free_port)
server_port=$(free_port)
gateway_port=$(free_port)

# nginx NAME CORE SERVER-BLOCK: one nginx with one worker, pinned to CORE.
nginx_run() {
  mkdir -p "$work/$1"
  cat > "$work/$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $work/$1/nginx.pid;
error_log $work/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/$1;
  proxy_temp_path $work/$1;
  fastcgi_temp_path $work/$1;
  uwsgi_temp_path $work/$1;
  scgi_temp_path $work/$1;
  upstream origin { server 127.0.0.1:$upstream_port; keepalive 64; }
  $3
}
EOF
  taskset -c "$2" nginx -c "$work/$1/nginx.conf" &
  pids+=($!)
}
nginx_run upstream 1 "server { listen 127.0.0.1:$upstream_port; keepalive_requests 1000000;
  location / { return 200 'ok'; } }"
nginx_run proxy 0 "server { listen 127.0.0.1:$nginx_port; keepalive_requests 1000000;
  location / { proxy_pass http://origin; proxy_http_version 1.1;
    proxy_set_header Connection ''; } }"
wait_port "$upstream_port"
wait_port "$nginx_port"

server_config=()
if [ -n "$geoip" ]; then
  # Country rules need the server's database too (a policy naming countries is 422
  # without one).
  printf 'geoip_database_file = "%s"\n' "$geoip" > "$work/server.toml"
  server_config=(--config "$work/server.toml")
fi
RUST_LOG=warn taskset -c 1 "$bin" serve --listen "127.0.0.1:$server_port" "${server_config[@]}" \
  --data-dir "$work/server" --root-key-file "$work/root.key" 2> "$work/server.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/root.key" ] && break; sleep 0.1; done
root=$(cat "$work/root.key")
api() {
  curl -q -sS --fail-with-body -X "$1" -H "authorization: Bearer $root" \
    -H 'content-type: application/json' --data "$3" "http://127.0.0.1:$server_port$2"
}
api PUT /v1/permissions/bench:read '{}' >/dev/null
api POST /v1/tenants '{"id":"edge"}' >/dev/null
created=$(api POST /v1/tenants/edge/tokens \
  '{"name":"bench client","kind":"client_credentials","permissions":["bench:read"]}')
client_id=$(json '["client_id"]' <<< "$created")
client_secret=$(json '["client_secret"]' <<< "$created")
gateway_key=$(api POST /v1/tenants/latchkey/tokens \
  '{"name":"bench gateway","kind":"api_key","permissions":["latchkey:introspect"]}' \
  | json '["api_key"]')

policy_jwt=""
if [ -n "$policy" ]; then
  api POST /v1/tenants '{"id":"ruled"}' >/dev/null
  api PUT /v1/tenants/ruled/policy "$(cat "$policy")" >/dev/null
  ruled=$(api POST /v1/tenants/ruled/tokens \
    '{"name":"ruled client","kind":"client_credentials","permissions":["bench:read"]}')
  policy_jwt=$(curl -q -sS --fail -u "$(json '["client_id"]' <<< "$ruled"):$(json '["client_secret"]' <<< "$ruled")" \
    -d grant_type=client_credentials "http://127.0.0.1:$server_port/oauth/token" \
    | json '["access_token"]')
fi

geoip_line=""
if [ -n "$geoip" ]; then geoip_line="geoip_database_file = \"$geoip\""; fi

cat > gateway.toml <<EOF
listen = "127.0.0.1:$gateway_port"
server = "http://127.0.0.1:$server_port"
credential = "$gateway_key"
$geoip_line

[[route]]
prefix = "/reports"
upstream = "http://127.0.0.1:$upstream_port"
scopes = { GET = ["bench:read"] }

[[route]]
prefix = "/public"
upstream = "http://127.0.0.1:$upstream_port"
public = true
EOF
RUST_LOG=warn taskset -c 0 "$bin" gateway --config gateway.toml 2> gateway.log &
pids+=($!)
wait_port "$gateway_port"

# The JWTs: one for the one-token runs, TOKENS for the round-robin runs.
python3 - "$server_port" "$client_id" "$client_secret" "$tokens" <<'EOF'
import base64, http.client, json, sys
port, client_id, secret, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", int(port))
basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
headers = {"Authorization": f"Basic {basic}",
           "Content-Type": "application/x-www-form-urlencoded"}
jwts = []
for _ in range(count):
    conn.request("POST", "/oauth/token", "grant_type=client_credentials", headers)
    reply = conn.getresponse()
    body = reply.read()
    if reply.status != 200:
        sys.exit(f"a grant answered {reply.status}: {body!r}")
    jwts.append(json.loads(body)["access_token"])
open("one.jwt", "w").write(jwts[0])
open("tokens.lua", "w").write(
    "local tokens = {" + ",".join(f'"{t}"' for t in jwts) + "}\n"
    + "local n = 0\n"
    + "request = function()\n"
    + "  n = n % #tokens + 1\n"
    + '  return wrk.format("GET", "/reports", {["Authorization"] = "Bearer " .. tokens[n]})\n'
    + "end\n")
EOF
jwt=$(cat one.jwt)
for _ in $(seq 1 100); do
  code=$(curl -q -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $jwt" \
    "http://127.0.0.1:$gateway_port/reports")
  [ "$code" = 200 ] && break
  sleep 0.1
done
[ "$code" = 200 ] || { echo "the gateway never let the token through ($code)" >&2; cat gateway.log >&2; exit 1; }

# load NAME ARGS…: one wrk run on core 1; prints its requests/s; fails on any error.
load() {
  local out
  out=$(taskset -c 1 wrk -t1 -c "$connections" -d "${duration}s" "$@" 2>&1)
  if grep -qE 'Non-2xx|Socket errors' <<< "$out"; then echo "$out" >&2; exit 1; fi
  awk '/^Requests\/sec:/ { print int($2) }' <<< "$out"
}
# Warm the verification cache with every token once.
taskset -c 1 wrk -t1 -c 1 -d "$(( tokens / 2000 + 2 ))s" -s tokens.lua \
  "http://127.0.0.1:$gateway_port" >/dev/null

printf '%-6s %12s %12s %14s %12s %12s\n' round nginx "gw 1 token" "gw $tokens tok." "gw public" \
  "${policy:+gw policy}"
declare -a a b c d e
for round in $(seq 1 "$rounds"); do
  a+=("$(load "http://127.0.0.1:$nginx_port/reports")")
  b+=("$(load -H "Authorization: Bearer $jwt" "http://127.0.0.1:$gateway_port/reports")")
  c+=("$(load -s tokens.lua "http://127.0.0.1:$gateway_port")")
  d+=("$(load "http://127.0.0.1:$gateway_port/public")")
  if [ -n "$policy_jwt" ]; then
    e+=("$(load -H "Authorization: Bearer $policy_jwt" "http://127.0.0.1:$gateway_port/reports")")
  fi
  printf '%-6s %12s %12s %14s %12s %12s\n' "$round" "${a[-1]}" "${b[-1]}" "${c[-1]}" "${d[-1]}" \
    "${e[-1]:-}"
done
python3 - "${a[*]}" "${b[*]}" "${c[*]}" "${d[*]}" "${e[*]:-}" <<'EOF'
import statistics, sys
nginx, one, many, public = (statistics.median(int(x) for x in arg.split()) for arg in sys.argv[1:5])
ruled = statistics.median(int(x) for x in sys.argv[5].split()) if sys.argv[5].strip() else None
print(f"median {nginx:12.0f} {one:12.0f} {many:14.0f} {public:12.0f}"
      + (f" {ruled:12.0f}" if ruled else ""))
if ruled:
    print(f"gateway, policy tenant / one token:  {ruled / one:.2f}")
print(f"gateway, one token / nginx:          {one / nginx:.2f}  (target >= 0.90)")
print(f"gateway, many tokens / one token:    {many / one:.2f}  (target >= 0.70)")
print(f"gateway, public route / nginx:       {public / nginx:.2f}")
EOF
