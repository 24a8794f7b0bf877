#!/usr/bin/env bash
# Dependency audit: pip-audit over every lock file in scripts/requirements/ (each exactly as
# `make lock` wrote it: what the image, the load-test image, `make run` and the tests install),
# then over everything installed in the venv.
#
#   scripts/audit.sh   exit 0: no unaccepted finding, or the advisory data could not be
#                              reached (then it says SKIPPED and NOTHING WAS AUDITED)
#                      exit 1: a known vulnerability that is not accepted, or pip-audit broke
#   AUDIT_REQUIRE_NETWORK=1 scripts/audit.sh   exit 2 instead of 0 when it had to skip
#   scripts/audit.sh --dry-run   print the pip-audit commands it would run, and stop
#
# Advisory data: PyPI's per-release JSON (pip-audit's default service), so this needs
# https://pypi.org/pypi/<name>/<version>/json. Accepted findings, each with its reason,
# live in tests/security/pip-audit-accepted.txt ("ID  package  reason" per line).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
PIP_AUDIT="${PIP_AUDIT:-$(dirname "$PYTHON")/pip-audit}"
ACCEPTED=tests/security/pip-audit-accepted.txt
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
DRY_RUN=0
if [ "${1:-}" = "--dry-run" ]; then DRY_RUN=1; fi
LOCKS=(scripts/requirements/*.txt)

skip_all() {
  echo "audit: SKIPPED - $1; NOTHING WAS AUDITED (the dependencies may or may not be vulnerable)." >&2
  if [ "${AUDIT_REQUIRE_NETWORK:-0}" = "1" ]; then exit 2; fi
  exit 0
}

# Probe exactly the kind of URL pip-audit uses: some mirrors serve only the per-project page.
if [ "$DRY_RUN" = 0 ] && ! "$PYTHON" - <<'PY'
import sys, urllib.request
url = "https://pypi.org/pypi/pip/24.0/json"
try:
    urllib.request.urlopen(url, timeout=10).read(1)
except Exception as error:  # noqa: BLE001
    print(f"audit: {url}: {error}", file=sys.stderr)
    sys.exit(1)
PY
then
  skip_all "PyPI's per-release advisory data is not reachable from here"
fi

ignores=()
if [ -f "$ACCEPTED" ]; then
  while read -r id _rest; do
    case "$id" in ''|'#'*) continue ;; esac
    ignores+=(--ignore-vuln "$id")
  done < "$ACCEPTED"
fi

cat > "$work/summarise.py" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
deps = report["dependencies"]
found = [(d["name"], d["version"], v) for d in deps for v in d.get("vulns", [])]
skipped = [d for d in deps if d.get("skip_reason")]
audited = len(deps) - len(skipped)
for name, version, vuln in found:
    fix = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
    print(f"  FINDING {vuln['id']} {name}=={version} (fix: {fix}): {vuln.get('description', '')[:300]}")
for dep in skipped[:10]:
    print(f"  not looked up: {dep['name']}: {dep['skip_reason']}")
if len(skipped) > 10:
    print(f"  ... and {len(skipped) - 10} more not looked up")
print(f"  {audited} packages audited, {len(skipped)} not looked up, {len(found)} unaccepted finding(s)")
if found:
    sys.exit(1)
sys.exit(3 if skipped and not audited else 0)
PY

status=0
skipped_runs=0
run() {  # name, pip-audit args...
  local name="$1"; shift
  local command=("$PIP_AUDIT" --vulnerability-service pypi --progress-spinner off --desc on
    --format json --output "$work/$name.json" "${ignores[@]}" "$@")
  if [ "$DRY_RUN" = 1 ]; then
    echo "${command[*]}"
    return
  fi
  echo "== pip-audit: $name"
  "${command[@]}" 2>"$work/$name.err"
  local code=$?
  if [ ! -s "$work/$name.json" ]; then
    if grep -qiE "connection|resolve|timed out|max retries" "$work/$name.err"; then
      echo "audit: SKIPPED ($name) - advisory data became unreachable; NOTHING WAS AUDITED:" >&2
      tail -3 "$work/$name.err" >&2
      skipped_runs=$((skipped_runs + 1))
      return
    fi
    echo "audit: pip-audit failed ($name), exit $code:" >&2
    tail -20 "$work/$name.err" >&2
    status=1
    return
  fi
  "$PYTHON" "$work/summarise.py" "$work/$name.json"
  case $? in
    0) ;;
    3) echo "audit: SKIPPED ($name) - no package could be looked up (this PyPI does not serve per-release advisory data); NOTHING WAS AUDITED." >&2
       skipped_runs=$((skipped_runs + 1)) ;;
    *) status=1 ;;
  esac
}

# One run per lock: they may hold different versions of a package they share (a transitive one
# resolved alone for the runtime), and pip-audit refuses two versions in one run. Every entry
# is pinned and hashed, so nothing is resolved or installed; markers are evaluated here.
for lock in "${LOCKS[@]}"; do
  run "$(basename "$lock" .txt)" -r "$lock" --no-deps --disable-pip
done
# pip-audit runs from the venv, so with no requirement file it audits the venv itself.
run installed --skip-editable
if [ "$DRY_RUN" = 1 ]; then exit 0; fi

if [ ${#ignores[@]} -gt 0 ]; then
  echo "accepted (see $ACCEPTED):"
  grep -vE '^\s*(#|$)' "$ACCEPTED" | sed 's/^/  /'
fi
if [ $status -ne 0 ]; then
  echo "audit: FAILED"
  exit $status
fi
if [ $skipped_runs -gt 0 ]; then
  echo "audit: INCOMPLETE - $skipped_runs of $((${#LOCKS[@]} + 1)) audits skipped (see above)"
  if [ "${AUDIT_REQUIRE_NETWORK:-0}" = "1" ]; then exit 2; fi
  exit 0
fi
echo "audit: OK"
