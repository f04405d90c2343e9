#!/usr/bin/env bash
# Runs every unit-test binary in $1 and sums their closing lines.
set -u
dir=$1; pass=0; fail=0
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  out=$("$t" 2>&1); rc=$?
  echo "$out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
  line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  if [ -z "$line" ]; then echo "FAIL $t (no result line, exit $rc)"; fail=$((fail+1)); continue; fi
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  pass=$((pass+p)); fail=$((fail+f))
  [ $rc -ne 0 ] && [ "$f" = 0 ] && { echo "FAIL $t exited $rc"; fail=$((fail+1)); }
done
echo "unit: $pass passed, $fail failed"
[ $fail -eq 0 ]
