#!/usr/bin/env bash
# tests/fuzz/run.sh fuzz SECONDS | replay
#   fuzz:   runs every build/fuzz/fuzzbin/fuzz_NAME for SECONDS on its seed
#           corpus (tests/fuzz/corpus/NAME, read only) plus what it found
#           before (build/fuzz/work/NAME, where new inputs go); prints the
#           executions of each and appends them to build/fuzz/stats.log.
#   replay: runs every file of every seed corpus once through its harness;
#           ends with "N passed, N failed" (one per file).
set -u
cd "$(dirname "$0")/../.."
mode=${1:-replay}
secs=${2:-60}
bins=build/fuzz/fuzzbin
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export HOOKWORK_LUA_DIR=$PWD/lua
pass=0; fail=0

for bin in "$bins"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); name=${name#fuzz_}
  corpus=tests/fuzz/corpus/$name
  if [ "$mode" = fuzz ]; then
    work=build/fuzz/work/$name
    mkdir -p "$work" build/fuzz/crashes
    log=build/fuzz/$name.log
    dirs=("$work")
    [ -d "$corpus" ] && dirs+=("$corpus")
    "$bin" -max_total_time="$secs" -print_final_stats=1 -max_len=16384 \
      -artifact_prefix=build/fuzz/crashes/"$name"- "${dirs[@]}" >"$log" 2>&1
    rc=$?
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    echo "fuzz_$name: ${execs:-0} executions in ${secs}s, $cov, corpus $(ls "$work" | wc -l) found + $(ls "$corpus" 2>/dev/null | wc -l) seeds, exit $rc"
    echo "$(date -u +%FT%TZ) fuzz_$name seconds=$secs execs=${execs:-0} rc=$rc" >> build/fuzz/stats.log
    if [ "$rc" -eq 0 ]; then pass=$((pass + 1)); else
      fail=$((fail + 1)); grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5; fi
  else
    [ -d "$corpus" ] || { echo "FAIL fuzz_$name: no corpus at $corpus"; fail=$((fail + 1)); continue; }
    files=("$corpus"/*)
    n=${#files[@]}
    if "$bin" "${files[@]}" >/dev/null 2>&1; then
      pass=$((pass + n)); echo "ok fuzz_$name: $n corpus inputs"
    else  # find which ones fail
      for f in "${files[@]}"; do
        if "$bin" "$f" >/dev/null 2>&1; then pass=$((pass + 1)); else
          fail=$((fail + 1)); echo "FAIL fuzz_$name: $f"; "$bin" "$f" 2>&1 | grep -E 'ERROR|SUMMARY|assert' | head -3; fi
      done
    fi
  fi
done
echo "fuzz $mode: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
