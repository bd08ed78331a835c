#!/usr/bin/env bash
# Regression guard: is the current tree slower than a base revision on the two figures
# that matter most on the hot paths, client-credentials grants per second and requests
# per second through the gateway with JWT auth (cached)? Builds both (release), runs
# `latchkey bench --grants-only` and `latchkey bench --edge` alternately for base and
# candidate so that both see the same machine (the candidate goes first in even rounds,
# so that neither always runs right after the other), compares the medians, prints the
# table, and exits 1 when the candidate is more than THRESHOLD % slower on either
# figure. Run it on demand on a quiet machine, not in CI: the figures are only as good
# as the machine is idle (see docs/BENCHMARKS.md, "Regression guard").
#
#   scripts/regression-guard.sh [BASE_REV]       # default HEAD~1
#   ROUNDS=5 DURATION=5 REVOCATIONS=200 THRESHOLD=15 scripts/regression-guard.sh v0.3.0
#
# GUARD_DIR (default $TMPDIR/latchkey-regression-guard) holds the base's git worktree,
# its target directory and the two binaries; it is kept, so that a second run rebuilds
# only what changed. BASE_TARGET_DIR overrides the base's target directory, e.g. the
# candidate's own `target` where disk is short (each build then recompiles the
# workspace's crates, but no second copy of the dependencies is made).
#
# Exit status: 0 no regression, 1 regression, 2 a build or a bench failed.
set -euo pipefail
base_rev="${1:-HEAD~1}"
rounds="${ROUNDS:-5}"
duration="${DURATION:-5}"
revocations="${REVOCATIONS:-200}"
threshold="${THRESHOLD:-15}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
guard="${GUARD_DIR:-${TMPDIR:-/tmp}/latchkey-regression-guard}"
base_target="${BASE_TARGET_DIR:-$guard/target}"
candidate_target="${CARGO_TARGET_DIR:-$repo/target}"

fail() { echo "regression-guard: $*" >&2; exit 2; }

base_commit="$(git -C "$repo" rev-parse --verify --quiet "$base_rev^{commit}")" ||
  fail "$base_rev is not a revision of $repo"
mkdir -p "$guard/bin"
git -C "$repo" worktree prune
if [ -e "$guard/base/.git" ]; then
  git -C "$guard/base" checkout --quiet --detach "$base_commit"
else
  git -C "$repo" worktree add --quiet --detach "$guard/base" "$base_commit"
fi

# The base first, copied out at once, in case BASE_TARGET_DIR is the candidate's.
echo "building the base, $base_rev ($(git -C "$repo" rev-parse --short "$base_commit")), in $guard/base" >&2
(cd "$guard/base" && CARGO_TARGET_DIR="$base_target" cargo build --release --quiet -p latchkey) ||
  fail "the base did not build"
cp "$base_target/release/latchkey" "$guard/bin/base"
echo "building the candidate, the current tree of $repo (uncommitted changes included)" >&2
(cd "$repo" && CARGO_TARGET_DIR="$candidate_target" cargo build --release --quiet -p latchkey) ||
  fail "the candidate did not build"
cp "$candidate_target/release/latchkey" "$guard/bin/candidate"

log="$guard/last-bench.log"
# run WHICH KIND -> one figure: grants/s, or the gateway's JWT auth (cached) requests/s.
run() {
  local out value
  case "$2" in
    grants)
      out="$(env -u LATCHKEY_TOKEN "$guard/bin/$1" bench --grants-only --duration "$duration" 2>"$log")" ||
        { cat "$log" >&2; fail "the $1's grant bench failed"; }
      value="$(awk '/^client_credentials grant/ { gsub(",", "", $3); print $3 }' <<<"$out")" ;;
    edge)
      out="$(env -u LATCHKEY_TOKEN "$guard/bin/$1" bench --edge --duration "$duration" \
        --revocations "$revocations" 2>"$log")" ||
        { cat "$log" >&2; fail "the $1's edge bench failed"; }
      value="$(awk -F'|' '/JWT auth \(cached\)/ { gsub(/[ ,]/, "", $3); print $3 }' <<<"$out")" ;;
  esac
  [[ "$value" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "$out" >&2; fail "no $2 figure in the $1's report"; }
  echo "$value"
}

median() { printf "%s\n" "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

base_grants=() candidate_grants=() base_edge=() candidate_edge=()
printf "%5s  %16s  %16s  %16s  %16s\n" round "base grants/s" "cand. grants/s" "base JWT req/s" "cand. JWT req/s"
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order=(base candidate); else order=(candidate base); fi
  declare -A grants=() edge=()
  for which in "${order[@]}"; do grants[$which]="$(run "$which" grants)"; done
  for which in "${order[@]}"; do edge[$which]="$(run "$which" edge)"; done
  base_grants+=("${grants[base]}"); candidate_grants+=("${grants[candidate]}")
  base_edge+=("${edge[base]}"); candidate_edge+=("${edge[candidate]}")
  printf "%5d  %16s  %16s  %16s  %16s\n" "$round" "${grants[base]}" "${grants[candidate]}" \
    "${edge[base]}" "${edge[candidate]}"
  unset grants edge
done

echo
awk -v threshold="$threshold" -v rounds="$rounds" -v duration="$duration" \
  -v bg="$(median "${base_grants[@]}")" -v cg="$(median "${candidate_grants[@]}")" \
  -v be="$(median "${base_edge[@]}")" -v ce="$(median "${candidate_edge[@]}")" '
function row(name, base, candidate,   change, slower) {
  change = base > 0 ? 100 * (candidate - base) / base : 0
  slower = -change > threshold
  printf "%-34s  %12.0f  %12.0f  %+7.1f%%  %s\n", name, base, candidate, change, slower ? "REGRESSION" : "ok"
  return slower
}
BEGIN {
  printf "medians over %d rounds of %d s; a regression is more than %d%% slower\n\n", rounds, duration, threshold
  printf "%-34s  %12s  %12s  %8s  %s\n", "figure", "base", "candidate", "change", "verdict"
  bad = row("client_credentials grants/s", bg, cg) + row("gateway, JWT auth (cached) req/s", be, ce)
  exit (bad > 0)
}'
