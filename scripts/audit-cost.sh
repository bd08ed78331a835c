#!/usr/bin/env bash
# What auditing authentications costs: client-credentials grants per second against two
# release servers that differ only in `audit_authentications`, measured alternately
# (off, on, off, on, ...) so that both see the same machine. Prints every run, then
# the medians and the cost.
#
#   cargo build --release -p latchkey
#   scripts/audit-cost.sh [ROUNDS] [SECONDS]          # default 8 rounds of 4 s
#   PIN=1 scripts/audit-cost.sh                       # servers on core 1, bench on core 0
#   OFF_DATABASE_URL=postgres://… ON_DATABASE_URL=postgres://… scripts/audit-cost.sh
#                                                     # two empty PostgreSQL databases
#
# Loopback only; the servers' data lives in a temporary directory that is removed.
set -euo pipefail
rounds="${1:-8}"
seconds="${2:-4}"
bin="$(cd "$(dirname "$0")/.." && pwd)/target/release/latchkey"
[ -x "$bin" ] || { echo "build first: cargo build --release -p latchkey" >&2; exit 1; }
work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

server_pin=() bench_pin=()
if [ "${PIN:-}" = 1 ]; then server_pin=(taskset -c 1); bench_pin=(taskset -c 0); fi

start() { # start MODE PORT AUDIT [DATABASE_URL]
  mkdir -p "$work/$1"
  cat > "$work/$1.toml" <<TOML
listen = "127.0.0.1:$2"
data_dir = "$work/$1"
root_key_file = "$work/$1.key"
audit_authentications = $3
TOML
  if [ -n "${4:-}" ]; then echo "database_url = \"$4\"" >> "$work/$1.toml"; fi
  env -u LATCHKEY_DATABASE_URL RUST_LOG=warn "${server_pin[@]}" "$bin" serve --config "$work/$1.toml" \
    >"$work/$1.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do [ -s "$work/$1.key" ] && return; sleep 0.1; done
  echo "the $1 server did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}
start off 7791 false "${OFF_DATABASE_URL:-}"
start on 7792 true "${ON_DATABASE_URL:-}"

run() { # run MODE PORT -> grants/s
  LATCHKEY_TOKEN="$(cat "$work/$1.key")" "${bench_pin[@]}" "$bin" bench \
    --server "http://127.0.0.1:$2" --duration "$seconds" --grants-only 2>/dev/null |
    awk '/^client_credentials grant/ { gsub(",", "", $3); print $3 }'
}

echo "round  off (grants/s)  on (grants/s)"
offs=() ons=()
for round in $(seq "$rounds"); do
  off="$(run off 7791)"; sleep 2
  on="$(run on 7792)"; sleep 2
  offs+=("$off"); ons+=("$on")
  printf "%5d  %14s  %13s\n" "$round" "$off" "$on"
done
median() { printf "%s\n" "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
off="$(median "${offs[@]}")"; on="$(median "${ons[@]}")"
awk -v off="$off" -v on="$on" -v cores="$(nproc)" 'BEGIN {
  printf "median off %.0f/s, on %.0f/s: auditing costs %.1f%% of grant throughput (%d cores)\n",
    off, on, 100 * (off - on) / off, cores }'
