#!/usr/bin/env bash
# Instructions per grant or per introspection, counted by callgrind (docs/BENCHMARKS.md,
# "The allocator"): the server runs under `valgrind --tool=callgrind`, one client sends
# WARMUP requests over one kept-alive connection, the counters are zeroed, N more are
# sent, and the counters are dumped. Every thread of the server is counted together;
# start-up and warm-up are left out. Instruction counts do not move with the machine's
# load, so two builds can be compared on a busy machine.
#
#   scripts/callgrind-server.sh                        # introspection, target/release
#   KIND=grant N=1000 scripts/callgrind-server.sh      # client-credentials grants
#   LATCHKEY_BIN=old/latchkey KEEP=/tmp/cg scripts/callgrind-server.sh
#
# KIND is introspect (an access JWT, by a caller holding latchkey:introspect) or grant;
# KEEP=DIR keeps the dump for callgrind_annotate. Needs valgrind, curl and python3.
# Everything listens on loopback only.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bin="${LATCHKEY_BIN:-$repo/target/release/latchkey}"
kind="${KIND:-introspect}"
count="${N:-2000}"
warmup="${WARMUP:-200}"
case "$kind" in grant|introspect) ;; *) echo "callgrind-server: KIND is grant or introspect" >&2; exit 2;; esac
# shellcheck source=scripts/bench-lib.sh
. "$repo/scripts/bench-lib.sh"
bench_require "$bin" valgrind callgrind_control callgrind_annotate curl python3
keep="${KEEP:-$work}"
mkdir -p "$keep"

port=$(free_port)
RUST_LOG=warn valgrind --tool=callgrind --compress-strings=no \
  --callgrind-out-file="$keep/server.callgrind.%p" \
  "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
  --root-key-file "$work/root.key" 2> "$work/server.log" &
pid=$!
pids+=("$pid")
for _ in $(seq 1 600); do
  [ -s "$work/root.key" ] && curl -q -s -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.2
done
root=$(cat "$work/root.key")
api() {
  curl -q -sS --fail -H "authorization: Bearer $root" -H 'content-type: application/json' \
    -d "$2" "http://127.0.0.1:$port$1"
}
api /v1/tenants '{"id":"acme"}' >/dev/null
created=$(api /v1/tenants/acme/tokens '{"name":"counted","kind":"client_credentials"}')
grant="grant_type=client_credentials&client_id=$(json '["client_id"]' <<< "$created")"
grant="$grant&client_secret=$(json '["client_secret"]' <<< "$created")"
key=$(api /v1/tenants/latchkey/tokens \
  '{"name":"introspector","kind":"api_key","permissions":["latchkey:introspect"]}' |
  json '["api_key"]')

python3 - "$port" "$kind" "$grant" "$key" "$warmup" "$count" "$pid" <<'EOF'
import http.client, json, subprocess, sys
port, kind, grant, key, warmup, count, pid = sys.argv[1:8]
form = {"Content-Type": "application/x-www-form-urlencoded"}
conn = http.client.HTTPConnection("127.0.0.1", int(port))

def send(path, body, headers):
    conn.request("POST", path, body, headers)
    reply = conn.getresponse()
    answer = reply.read()
    if reply.status != 200:
        sys.exit(f"{path} answered {reply.status}: {answer[:200]!r}")
    return json.loads(answer)

if kind == "grant":
    request = ("/oauth/token", grant, form)
else:
    token = send("/oauth/token", grant, form)["access_token"]
    request = ("/oauth/introspect", "token=" + token, {**form, "Authorization": "Bearer " + key})
for _ in range(int(warmup)):
    send(*request)
subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
for _ in range(int(count)):
    answer = send(*request)
    if kind == "introspect" and answer.get("active") is not True:
        sys.exit(f"the token was not active: {answer}")
subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
EOF

dump=$(ls -t "$keep"/server.callgrind."$pid".* | head -n 1)
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "$kind: $((total / count)) instructions per request ($count requests, one connection; $(basename "$dump"))"
