#!/usr/bin/env bash
# Client-credentials grants per second of two server binaries, measured as users run
# them and in one run: each `latchkey serve` is its own process pinned to core 0 (fresh
# SQLite data directory), h2load is pinned to core 1, and the rounds alternate between
# the two servers (the second goes first in even rounds) so both see the same machine.
# Prints every round and the medians (docs/BENCHMARKS.md).
#
#   scripts/ab-grants.sh BASE_BINARY CANDIDATE_BINARY
#   ROUNDS=7 DURATION=10 CONNECTIONS=32 scripts/ab-grants.sh old/latchkey new/latchkey
#   KIND=introspect scripts/ab-grants.sh old/latchkey new/latchkey
#
# KIND=introspect measures RFC 7662 introspection of an access JWT instead, by a caller
# holding latchkey:introspect (the answer a gateway without a deny-list replica asks
# for on every new token).
#
# CANDIDATE_WEBHOOKS=N gives the candidate server N webhooks subscribed to every event
# (docs/API.md, "Webhooks"), made after its client: the cost of the outbox on grants.
# Pass the same binary twice to measure it alone:
#   CANDIDATE_WEBHOOKS=10 scripts/ab-grants.sh target/release/latchkey target/release/latchkey
#
# CANDIDATE_CONFIG=FILE starts the candidate with `--config FILE` (say, a
# geoip_database_file), and CANDIDATE_POLICY=FILE puts that JSON as tenant acme's policy
# (docs/API.md, "Tenant policies"): the cost of network and country rules on grants.
#
# Needs h2load (Debian: nghttp2-client), taskset, curl and python3; 2 cores or more.
set -euo pipefail
base_bin=$(realpath "$1")
cand_bin=$(realpath "$2")
rounds="${ROUNDS:-5}"
kind="${KIND:-grants}"
case "$kind" in grants|introspect) ;; *) echo "ab-grants: KIND is grants or introspect" >&2; exit 2;; esac
duration="${DURATION:-10}"
connections="${CONNECTIONS:-32}"
cand_config="${CANDIDATE_CONFIG:+$(realpath "$CANDIDATE_CONFIG")}"
cand_policy="${CANDIDATE_POLICY:+$(realpath "$CANDIDATE_POLICY")}"
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
bench_require "$base_bin" "$cand_bin" h2load taskset curl python3
cd "$work"

# start NAME BINARY: a server on a free port; sets $address and writes NAME.form.
start() {
  local name=$1 bin=$2 port root created
  port=$(free_port)
  mkdir "$name"
  local config=()
  if [ "$name" = candidate ] && [ -n "$cand_config" ]; then
    config=(--config "$cand_config")
  fi
  RUST_LOG=warn taskset -c 0 "$bin" serve --listen "127.0.0.1:$port" "${config[@]}" \
    --data-dir "$work/$name" --root-key-file "$work/$name.root" 2> "$work/$name.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -s "$work/$name.root" ] && break; sleep 0.1; done
  root=$(cat "$work/$name.root")
  address="127.0.0.1:$port"
  curl -q -sS --fail -H "authorization: Bearer $root" -H 'content-type: application/json' \
    -d '{"id":"acme"}' "http://$address/v1/tenants" >/dev/null
  created=$(curl -q -sS --fail -H "authorization: Bearer $root" \
    -H 'content-type: application/json' -d '{"name":"ab","kind":"client_credentials"}' \
    "http://$address/v1/tenants/acme/tokens")
  printf 'grant_type=client_credentials&client_id=%s&client_secret=%s' \
    "$(json '["client_id"]' <<< "$created")" "$(json '["client_secret"]' <<< "$created")" \
    > "$name.form"
  if [ "$name" = candidate ] && [ -n "$cand_policy" ]; then
    curl -q -sS --fail -X PUT -H "authorization: Bearer $root" \
      -H 'content-type: application/json' --data @"$cand_policy" \
      "http://$address/v1/tenants/acme/policy" >/dev/null
  fi
  if [ "$name" = candidate ]; then
    for i in $(seq 1 "${CANDIDATE_WEBHOOKS:-0}"); do
      # Never reached: a grant writes no event a webhook hears.
      curl -q -sS --fail -H "authorization: Bearer $root" -H 'content-type: application/json' \
        -d "{\"url\":\"https://hook-$i.invalid/latchkey\",\"events\":[\"token.created\",\"token.revoked\",\"token.rolled\",\"token.leaked\",\"token.expiring\",\"token.first_seen_ip\"]}" \
        "http://$address/v1/webhooks" >/dev/null
    done
  fi
  if [ "$kind" = introspect ]; then
    local jwt key
    jwt=$(curl -q -sS --fail -H 'content-type: application/x-www-form-urlencoded' \
      --data @"$name.form" "http://$address/oauth/token" | json '["access_token"]')
    key=$(curl -q -sS --fail -H "authorization: Bearer $root" \
      -H 'content-type: application/json' \
      -d '{"name":"ab gateway","kind":"api_key","permissions":["latchkey:introspect"]}' \
      "http://$address/v1/tenants/latchkey/tokens" | json '["api_key"]')
    printf 'token=%s' "$jwt" > "$name.form"
    printf '%s' "$key" > "$name.key"
  fi
}

start base "$base_bin"
base_address=$address
start candidate "$cand_bin"
cand_address=$address

# load NAME ADDRESS: one h2load run; prints its requests/s, fails on any failed request.
load() {
  local out path=/oauth/token auth=()
  if [ "$kind" = introspect ]; then
    path=/oauth/introspect
    auth=(-H "authorization: Bearer $(cat "$1.key")")
  fi
  out=$(taskset -c 1 h2load --h1 -c "$connections" -D "$duration" --warm-up-time 2 \
    -d "$1.form" -H 'content-type: application/x-www-form-urlencoded' "${auth[@]}" \
    "http://$2$path" 2>&1)
  grep -q ' 0 failed, 0 errored' <<< "$out" || { echo "$out" >&2; exit 1; }
  awk '/^finished in/ { gsub(",", "", $4); print int($4) }' <<< "$out"
}

printf '%-6s %14s %14s\n' round "base $kind/s" "cand. $kind/s"
base_runs=(); cand_runs=()
for round in $(seq 1 "$rounds"); do
  if (( round % 2 )); then
    b=$(load base "$base_address"); c=$(load candidate "$cand_address")
  else
    c=$(load candidate "$cand_address"); b=$(load base "$base_address")
  fi
  base_runs+=("$b"); cand_runs+=("$c")
  printf '%-6s %14s %14s\n' "$round" "$b" "$c"
done
python3 - "${base_runs[*]}" "${cand_runs[*]}" <<'EOF'
import statistics, sys
base = statistics.median(int(x) for x in sys.argv[1].split())
cand = statistics.median(int(x) for x in sys.argv[2].split())
print(f"median {base:14.0f} {cand:14.0f}   change {100 * (cand - base) / base:+.1f}%")
EOF
