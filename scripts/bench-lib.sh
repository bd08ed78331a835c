# Sourced by the bench scripts (bench-tls.sh, ab-grants.sh, bench-gateway-vs-nginx.sh):
# what each needs before it starts a process.
#   - bench_require TOOL…: exits 2 naming the first tool (or binary path) that is missing;
#   - $work, a temporary directory, and $pids, the processes started: an EXIT trap kills
#     them and removes the directory;
#   - no LATCHKEY_* variable of the caller's shell reaches a child: a database URL or
#     config file from the caller's environment would change what is measured;
#   - free_port: a loopback port nothing listens on; json PATH: a member of the JSON on
#     standard input, as python's `["a"]["b"]`.

bench_require() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "$(basename "$0"): $tool is missing" >&2
      exit 2
    }
  done
}

work=$(mktemp -d)
pids=()
bench_cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap bench_cleanup EXIT

while IFS= read -r var; do unset "$var"; done \
  < <(env | sed -n 's/^\(LATCHKEY_[A-Z_]*\)=.*/\1/p')

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
