#!/usr/bin/env bash
# check-literals.sh: token kinds and permission names are typed values of latchkey-core
# (TokenKind, Permission::is_admin and its siblings, the ADMIN / MANAGE / INTROSPECT
# constants) and of latchkey-wire (JwtKind, Claims::is_long_lived). Outside core's own
# src, code compares against those, never against the wire strings.
#
# It greps crates/*/src except crates/latchkey-core/src, skipping test code: files named
# tests.rs or proptests.rs, and everything from a file's first `#[cfg(test)]` on (test
# modules sit at the end of their file). It flags:
#   - a comparison with a token-kind literal: == "jwt", "api_key" !=, Some("jwt") =>;
#   - a match arm on a bare "jwt" or "api_key" ("client_credentials" is also the OAuth
#     grant type, which /oauth/token matches by name, so only its comparisons count);
#   - any string literal "latchkey:admin", "latchkey:manage" or "latchkey:introspect";
#   - a permission compared by its text: as_str() == ADMIN and the like;
#   - a JSON member "kind" compared with a literal: value["kind"] == "token".
# It prints each offender as path:line: text and exits 1 if there is any, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."

kinds='(jwt|api_key|client_credentials)'
patterns=(
  "[=!]=[[:space:]]*(Some\()?\"${kinds}\""
  "\"${kinds}\"\)?[[:space:]]*[=!]="
  "Some\(\"${kinds}\"\)[[:space:]]*(=>|\|)"
  "\"latchkey:(admin|manage|introspect)\""
  "as_str\(\)[[:space:]]*[=!]=[[:space:]]*(ADMIN|MANAGE|INTROSPECT)\b"
  "\b(ADMIN|MANAGE|INTROSPECT)[[:space:]]*[=!]=[[:space:]]*[a-z_.]+\.as_str\(\)"
  "\[\"kind\"\][[:space:]]*[=!]=[[:space:]]*\""
)
anywhere="$(IFS='|'; echo "${patterns[*]}")"
# A match arm starts its line; the other patterns may sit anywhere in it.
arm="[[:space:]]*\"(jwt|api_key)\"[[:space:]]*(=>|\|)"

offenders=0
while IFS= read -r -d '' file; do
  case "$file" in
    crates/latchkey-core/src/*|*/tests.rs|*/proptests.rs) continue ;;
  esac
  # Number the lines, stop at the first test module, keep the matches.
  found="$(awk '/^[[:space:]]*#\[cfg\(test\)\]/ { exit } { print FNR ": " $0 }' "$file" |
    grep -E -- "^[0-9]+: (${arm}|.*(${anywhere}))" || true)"
  if [ -n "$found" ]; then
    while IFS= read -r line; do
      echo "${file}:${line}"
    done <<<"$found"
    offenders=1
  fi
done < <(find crates -path '*/src/*' -name '*.rs' -print0 | sort -z)

if [ "$offenders" -ne 0 ]; then
  echo "check-literals: compare with latchkey-core's typed values instead (see the top of $0)." >&2
  exit 1
fi
echo "check-literals: no token-kind or permission-name literal comparisons outside latchkey-core"
