#!/usr/bin/env bash
# make test: every test of the project, twice over where it matters:
#   1. C unit tests (release build)
#   2. the example cycles' own tests (hookwork test cycles)
#   3. the black-box suite against ./hookwork over real HTTP, then again with
#      every engine on PostgreSQL (HOOKWORK_TEST_STORE=postgres: a throwaway
#      server from tests/e2e/pgserver.py; release build only, to keep the
#      run short), and every fuzz corpus (tests/fuzz/corpus) once through its
#      libFuzzer harness
#   4. the web console in a real browser (headless Chromium, tests/browser)
#   5. unit tests, cycle tests and the black-box suite again under
#      AddressSanitizer + UndefinedBehaviorSanitizer (./hookwork-asan)
# Each stage ends with "N passed, N failed"; this script sums them and
# fails when any test failed.
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=99}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}

stage() {  # name, command...
  local name=$1 line p f rc log
  shift
  echo "== $name"
  log=$(mktemp)
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '([0-9]+) passed, ([0-9]+) failed' "$log" | tail -1)
  rm -f "$log"
  if [ -z "$line" ]; then
    echo "stage '$name' printed no result line (exit $rc)"; fail=$((fail + 1)); return
  fi
  p=$(grep -oE '[0-9]+ passed' <<<"$line" | grep -oE '[0-9]+')
  f=$(grep -oE '[0-9]+ failed' <<<"$line" | grep -oE '[0-9]+')
  pass=$((pass + p)); fail=$((fail + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "stage '$name' exited $rc"; fail=$((fail + 1))
  fi
}

stage "unit tests" make --no-print-directory unit
stage "cycle tests" ./hookwork test cycles tests/harness
stage "black-box suite" python3 tests/e2e/run.py
HOOKWORK_TEST_STORE=postgres stage "black-box suite (postgres)" python3 tests/e2e/run.py
stage "fuzz corpora" make --no-print-directory fuzz-replay
stage "browser tests" python3 tests/browser/run.py
if make --no-print-directory asan >/dev/null 2>&1; then
  stage "unit tests (asan)" make --no-print-directory BUILD=build/asan \
    OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -DLUA_USE_APICHECK" \
    LDFLAGS="-fsanitize=address,undefined" unit
  stage "cycle tests (asan)" ./hookwork-asan test cycles tests/harness
  HOOKWORK_BIN=$PWD/hookwork-asan HOOKWORK_SANITIZED=1 \
    stage "black-box suite (asan)" python3 tests/e2e/run.py
else
  echo "asan build failed"; fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
