#!/usr/bin/env bash
# The gateway against nginx's plain reverse proxy, in one run (docs/BENCHMARKS.md,
# "The gateway against nginx"). Both proxies are pinned to core 0 and stand in front of
# the same upstream (an nginx answering 200 "ok", pinned to core 1 with wrk, the load
# generator); the latchkey server that the gateway follows runs on core 1 too and is
# idle during the runs (cached JWT checks). The workloads, rounds alternating:
#   - nginx, plain proxy, no authentication (the issue's reference);
#   - nginx, plain proxy, sent the same request as the one-token gateway run, its
#     JWT in `Authorization` included (which nginx parses and forwards unread): the
#     same bytes through both proxies;
#   - the gateway with one JWT (the verification cache hit every time);
#   - the gateway with 10,000 distinct JWTs used round-robin (each one verified once,
#     then cached; the cache is warmed by one pass before the timed run);
#   - the gateway on a public route (no token), for the proxy's own cost;
#   - when target/release/examples/bare_proxy exists (cargo build --release --workspace
#     --examples), a bare hyper proxy pinned to core 0 too: hyper's server and client
#     and nothing else, the floor under the gateway (BARE=PATH names another build).
# Prints every round and the medians, and the ratios issue 16 targets. Each run also
# counts the proxy's CPU time (user + system, from /proc, the process and its children)
# per request served: on a machine that is not idle, that figure moves much less than
# requests/s, and its ratio is the throughput ratio a dedicated core would give.
#
# POLICY=FILE adds a fifth workload: one JWT of a second tenant whose policy is that
# JSON (docs/API.md, "Tenant policies"), say 1,000 networks and a country rule; with
# GEOIP=FILE the gateway loads that country database (geoip_database_file). The two
# one-token columns then give the cost of the rules at the gateway, in one run:
#   POLICY=/tmp/bench-policy.json GEOIP=/tmp/bench-countries.mmdb scripts/bench-gateway-vs-nginx.sh
#
# BASE=PATH runs a second gateway, another build's binary, beside the first: pinned to
# core 0 too, the same configuration on its own port, following the same server. Each
# round then adds its one-token run right after the first gateway's, and the summary
# gives both builds' ratios to nginx and to each other, from the same rounds. Round by
# round ratios are printed too (median, lowest, highest): on a machine whose speed
# drifts, they show how far one run's ratio of medians can be trusted. Throughput only
# (not with CALLGRIND or STRACE).
#   BASE=/tmp/latchkey-regression-guard/bin/base ROUNDS=9 DURATION=5 scripts/bench-gateway-vs-nginx.sh
#
# GATEWAY_SETTINGS='…' adds top-level lines to the gateway's TOML, say
# 'metrics_enabled = false' to measure what metrics cost (run it with and without).
#
# CALLGRIND=N counts instructions instead (valgrind's callgrind, which counts the same
# whatever else the machine runs): nginx's proxy and the gateway run under valgrind, and
# N requests of each workload go over one kept-alive connection; the counters are zeroed
# before and dumped after them, so start-up and warm-up are left out. Kernel time is not
# counted, for either proxy. CALLGRIND_KEEP=DIR keeps the dumps for callgrind_annotate.
# CALLGRIND=wrk counts over a wrk run of DURATION seconds with CONNECTIONS instead, the
# load the throughput runs put on (each proxy then serves a few thousand requests).
#   CALLGRIND=5000 scripts/bench-gateway-vs-nginx.sh
#
# STRACE=N counts system calls per request the same way (strace -c, every thread of
# each proxy), over N requests on one connection or, with STRACE=wrk, over a wrk run.
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
base_bin="${BASE:+$(realpath "$BASE")}"
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
bare_port=$(free_port)
bare_bin="${BARE:-$repo/target/release/examples/bare_proxy}"
[ -x "$bare_bin" ] || bare_bin=""
base_port=$(free_port)
if [ -n "$base_bin" ] && [ -n "${CALLGRIND:-}${STRACE:-}" ]; then
  echo "BASE is for throughput runs, not with CALLGRIND or STRACE" >&2; exit 2
fi
[ -z "$base_bin" ] || bench_require "$base_bin"

callgrind="${CALLGRIND:-}"
# Under valgrind: the command, with its counters zeroed by callgrind_control later.
valgrind_for() {
  if [ -n "$callgrind" ] && [ "$1" != upstream ]; then
    echo valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$work/$1.callgrind.%p"
  fi
}
[ -z "$callgrind" ] || bench_require valgrind callgrind_control

# nginx NAME CORE SERVER-BLOCK: one nginx with one worker, pinned to CORE (and, under
# callgrind, no master process).
nginx_run() {
  mkdir -p "$work/$1"
  local master=""
  [ -z "$(valgrind_for "$1")" ] || master="master_process off;"
  cat > "$work/$1/nginx.conf" <<EOF
$master
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
  # shellcheck disable=SC2046
  taskset -c "$2" $(valgrind_for "$1") nginx -c "$work/$1/nginx.conf" &
  pids+=($!)
  eval "pid_$1=$!"
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
${GATEWAY_SETTINGS:-}

[[route]]
prefix = "/reports"
upstream = "http://127.0.0.1:$upstream_port"
scopes = { GET = ["bench:read"] }

[[route]]
prefix = "/public"
upstream = "http://127.0.0.1:$upstream_port"
public = true
EOF
# shellcheck disable=SC2046
RUST_LOG=warn taskset -c 0 $(valgrind_for gateway) "$bin" gateway --config gateway.toml 2> gateway.log &
pids+=($!)
pid_gateway=$!
wait_port "$gateway_port"
if [ -n "$base_bin" ]; then
  sed "s/^listen = .*/listen = \"127.0.0.1:$base_port\"/" gateway.toml > gateway-base.toml
  RUST_LOG=warn taskset -c 0 "$base_bin" gateway --config gateway-base.toml 2> gateway-base.log &
  pids+=($!)
  pid_base=$!
  wait_port "$base_port"
fi
if [ -n "$bare_bin" ]; then
  # shellcheck disable=SC2046
  taskset -c 0 $(valgrind_for bare) "$bare_bin" "127.0.0.1:$bare_port" "127.0.0.1:$upstream_port" &
  pids+=($!)
  pid_bare=$!
  wait_port "$bare_port"
fi

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

# drive URL TOKEN HOW: the load the instruction and system-call counts are taken over,
# and prints how many requests it made. HOW is a number, that many requests one after
# another over one kept-alive connection, or "wrk", a wrk run (CONNECTIONS, DURATION),
# the load the throughput runs put on. TOKEN may be empty (a public route).
drive() {
  if [ "$3" = wrk ]; then
    local auth=()
    [ -z "$2" ] || auth=(-H "Authorization: Bearer $2")
    taskset -c 1 wrk -t1 -c "$connections" -d "${duration}s" "${auth[@]}" "$1" \
      | awk '/requests in/ { print $1 }'
    return
  fi
  python3 - "$1" "$3" "$2" <<'EOF'
import http.client, sys, urllib.parse
url, count, token = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conn = http.client.HTTPConnection(url.hostname, url.port)
headers = {"Authorization": f"Bearer {token}"} if token else {}
for _ in range(count):
    conn.request("GET", url.path, headers=headers)
    reply = conn.getresponse()
    reply.read()
    if reply.status != 200:
        sys.exit(f"{url.geturl()} answered {reply.status}")
EOF
  echo "$3"
}

if [ -n "$callgrind" ]; then
  # count NAME PID URL [TOKEN]: instructions of PID per request of CALLGRIND requests.
  count() {
    callgrind_control -z "$2" >/dev/null
    local served
    served=$(drive "$3" "${4:-}" "$callgrind")
    callgrind_control --dump="$1" "$2" >/dev/null
    local dump
    dump=$(ls -t "$work/$1".callgrind.* | head -n 1)
    # CALLGRIND_KEEP=DIR keeps each dump there, for callgrind_annotate.
    [ -z "${CALLGRIND_KEEP:-}" ] || cp "$dump" "$CALLGRIND_KEEP/$1-$(basename "$3")-$(basename "$dump")"
    awk -v n="$served" '/^(summary|totals):/ { print int($2 / n); exit }' "$dump"
  }
  gw_pid=$(pgrep -f "callgrind-out-file=$work/gateway" | head -n 1)
  nginx_pid=$(pgrep -f "callgrind-out-file=$work/proxy" | head -n 1)
  n=$(count proxy "$nginx_pid" "http://127.0.0.1:$nginx_port/reports")
  one=$(count gateway "$gw_pid" "http://127.0.0.1:$gateway_port/reports" "$jwt")
  public=$(count gateway "$gw_pid" "http://127.0.0.1:$gateway_port/public")
  if [ "$callgrind" = wrk ]; then
    echo "instructions per request (wrk, $connections connections, ${duration} s under valgrind):"
  else
    echo "instructions per request ($callgrind requests, one connection):"
  fi
  echo "  nginx, plain proxy:  $n"
  echo "  gateway, one JWT:    $one ($(awk -v a="$one" -v b="$n" 'BEGIN { printf "%.2f", a / b }') x nginx)"
  echo "  gateway, public:     $public ($(awk -v a="$public" -v b="$n" 'BEGIN { printf "%.2f", a / b }') x nginx)"
  if [ -n "$bare_bin" ]; then
    bare=$(count bare "$(pgrep -f "callgrind-out-file=$work/bare" | head -n 1)" "http://127.0.0.1:$bare_port/reports")
    echo "  bare hyper proxy:    $bare ($(awk -v a="$bare" -v b="$n" 'BEGIN { printf "%.2f", a / b }') x nginx)"
  fi
  exit 0
fi

if [ -n "${STRACE:-}" ]; then
  # syscalls NAME PID URL [TOKEN]: system calls of PID (every thread) per request of
  # STRACE requests over one kept-alive connection, by name; with STRACE=wrk, per
  # request of a wrk run (CONNECTIONS, DURATION) instead, the load the throughput runs
  # put on. strace's own start and stop are a handful of calls, nothing per request.
  syscalls() {
    strace -f -c -o "$work/$1.strace" -p "$2" 2>/dev/null &
    local tracer=$! served
    sleep 1
    served=$(drive "$3" "${4:-}" "$STRACE")
    kill -INT "$tracer"
    wait "$tracer" || true
    awk -v n="$served" -v name="$1" '
      $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { calls[$NF] = ($4 ~ /^[0-9]+$/ ? $4 : $3) }
      END {
        total = 0; line = ""
        for (c in calls) {
          total += calls[c]
          if (calls[c] / n >= 0.05) line = line sprintf(" %s %.2f", c, calls[c] / n)
        }
        printf "  %-12s %5.2f per request:%s\n", name, total / n, line
      }' "$work/$1.strace"
  }
  bench_require strace
  if [ "$STRACE" = wrk ]; then
    echo "system calls per request (wrk, $connections connections, ${duration} s under strace):"
  else
    echo "system calls per request ($STRACE requests, one connection):"
  fi
  syscalls nginx "$(pgrep -P "$pid_proxy" | head -n 1)" "http://127.0.0.1:$nginx_port/reports"
  syscalls gateway-jwt "$pid_gateway" "http://127.0.0.1:$gateway_port/reports" "$jwt"
  syscalls gateway-public "$pid_gateway" "http://127.0.0.1:$gateway_port/public"
  [ -z "$bare_bin" ] || syscalls bare-hyper "$pid_bare" "http://127.0.0.1:$bare_port/reports"
  exit 0
fi

# cpu_ticks PID: the clock ticks of CPU (user + system) used so far by PID and its
# children (nginx's master and its worker).
cpu_ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    total=$(( total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
# load PID ARGS…: one wrk run on core 1 against the proxy PID; prints its requests/s
# and the proxy's CPU µs per request, "rate/cpu"; fails on any error.
load() {
  local out pid="$1" before after served
  shift
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c "$connections" -d "${duration}s" "$@" 2>&1)
  after=$(cpu_ticks "$pid")
  if grep -qE 'Non-2xx|Socket errors' <<< "$out"; then echo "$out" >&2; exit 1; fi
  served=$(awk '/requests in/ { print $1 }' <<< "$out")
  awk -v t="$(( after - before ))" -v hz="$(getconf CLK_TCK)" -v n="$served" \
    '/^Requests\/sec:/ { printf "%d/%.1f\n", $2, t / hz * 1e6 / n }' <<< "$out"
}
# Warm the verification cache with every token once.
taskset -c 1 wrk -t1 -c 1 -d "$(( tokens / 2000 + 2 ))s" -s tokens.lua \
  "http://127.0.0.1:$gateway_port" >/dev/null

printf '%-6s %16s %16s %16s %18s %16s %16s %16s %16s\n' round nginx "nginx + JWT" "gw 1 token" \
  "gw $tokens tok." "gw public" "${bare_bin:+bare hyper}" "${policy:+gw policy}" \
  "${base_bin:+base 1 token}"
declare -a a b c d e f g h
# last VALUES…: the last of them, or nothing.
last() { [ "$#" -eq 0 ] || echo "${!#}"; }
for round in $(seq 1 "$rounds"); do
  a+=("$(load "$pid_proxy" "http://127.0.0.1:$nginx_port/reports")")
  g+=("$(load "$pid_proxy" -H "Authorization: Bearer $jwt" "http://127.0.0.1:$nginx_port/reports")")
  b+=("$(load "$pid_gateway" -H "Authorization: Bearer $jwt" "http://127.0.0.1:$gateway_port/reports")")
  if [ -n "$base_bin" ]; then
    h+=("$(load "$pid_base" -H "Authorization: Bearer $jwt" "http://127.0.0.1:$base_port/reports")")
  fi
  c+=("$(load "$pid_gateway" -s tokens.lua "http://127.0.0.1:$gateway_port")")
  d+=("$(load "$pid_gateway" "http://127.0.0.1:$gateway_port/public")")
  if [ -n "$bare_bin" ]; then
    f+=("$(load "$pid_bare" "http://127.0.0.1:$bare_port/reports")")
  fi
  if [ -n "$policy_jwt" ]; then
    e+=("$(load "$pid_gateway" -H "Authorization: Bearer $policy_jwt" "http://127.0.0.1:$gateway_port/reports")")
  fi
  # One argument per column, empty where a workload is not run, so the columns line up.
  printf '%-6s %16s %16s %16s %18s %16s %16s %16s %16s\n' "$round" "${a[-1]}" "${g[-1]}" "${b[-1]}" \
    "${c[-1]}" "${d[-1]}" "$(last "${f[@]}")" "$(last "${e[@]}")" "$(last "${h[@]}")"
done
python3 - "${a[*]}" "${b[*]}" "${c[*]}" "${d[*]}" "${e[*]:-}" "${f[*]:-}" "${g[*]}" "${h[*]:-}" <<'EOF'
import statistics, sys
def column(arg, part):
    return statistics.median(float(x.split("/")[part]) for x in arg.split())
args = sys.argv[1:5]
nginx, one, many, public = (column(arg, 0) for arg in args)
cpu = [column(arg, 1) for arg in args]
ruled = column(sys.argv[5], 0) if sys.argv[5].strip() else None
bare = column(sys.argv[6], 0) if sys.argv[6].strip() else None
bare_cpu = column(sys.argv[6], 1) if bare else None
same, same_cpu = column(sys.argv[7], 0), column(sys.argv[7], 1)
base_arg = sys.argv[8].strip()
base = column(base_arg, 0) if base_arg else None
print(f"median {nginx:16.0f} {same:16.0f} {one:16.0f} {many:18.0f} {public:16.0f}"
      + (f" {bare:16.0f}" if bare else f" {'':16}")
      + (f" {ruled:16.0f}" if ruled else f" {'':16}")
      + (f" {base:16.0f}" if base else ""))
print("CPU µs per request, medians: "
      + ", ".join(f"{name} {value:.1f}" for name, value in
                  zip(["nginx", "gw one token", "gw many tokens", "gw public"], cpu))
      + f", nginx + JWT {same_cpu:.1f}")
if ruled:
    print(f"gateway, policy tenant / one token:  {ruled / one:.2f}")
print(f"gateway, one token / nginx:          {one / nginx:.2f}  (target >= 0.90)"
      f"  by CPU per request: {cpu[0] / cpu[1]:.2f}")
print(f"gateway, one token / nginx + JWT:    {one / same:.2f}  (the same request through both)"
      f"  by CPU per request: {same_cpu / cpu[1]:.2f}")
print(f"gateway, many tokens / one token:    {many / one:.2f}  (target >= 0.70)"
      f"  by CPU per request: {cpu[1] / cpu[2]:.2f}")
print(f"gateway, public route / nginx:       {public / nginx:.2f}"
      f"  by CPU per request: {cpu[0] / cpu[3]:.2f}")
def rounds(numerators, denominators):
    """Round by round ratios of requests/s: median, lowest, highest."""
    ratios = [float(n.split("/")[0]) / float(d.split("/")[0])
              for n, d in zip(numerators.split(), denominators.split())]
    return f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
print(f"round by round, one token / nginx:   {rounds(sys.argv[2], sys.argv[1])}")
if base:
    base_cpu = column(base_arg, 1)
    print(f"base build, one token / nginx:       {base / nginx:.2f}"
          f"  by CPU per request: {cpu[0] / base_cpu:.2f}")
    print(f"round by round, base / nginx:        {rounds(base_arg, sys.argv[1])}")
    print(f"gateway / base build, one token:     {one / base:.2f}"
          f"  by CPU per request: {base_cpu / cpu[1]:.2f};"
          f" round by round {rounds(sys.argv[2], base_arg)}")
if bare:
    print(f"bare hyper proxy / nginx:            {bare / nginx:.2f}"
          f"  by CPU per request: {cpu[0] / bare_cpu:.2f}")
    print(f"gateway, one token / bare hyper:     {one / bare:.2f}"
          f"  by CPU per request: {bare_cpu / cpu[1]:.2f}")
EOF
