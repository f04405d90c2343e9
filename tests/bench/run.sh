#!/usr/bin/env bash
# tests/bench/run.sh - the hookwork benchmark (`make bench`; never part of
# `make test`).  In one run it measures, on loopback (issue 14's table; the
# parts also answer the older issues 2-5, 11-13):
#   ff    fire-and-forget webhook (one trivial step), durable 202s; during
#         it: the loop's work per iteration, CPU and run-queue wait per
#         request by thread, Lua allocations per transaction; then a perf
#         profile of the loop thread (BENCH_PERF=0 to skip);
#   sync  the peer rig (/work/shared/bench/peers/run_peers.sh, BENCH_RIG)
#         with SYSTEMS="custom nginx-1w nodered": hookwork's synchronous
#         webhook (Lua step + respond) as `custom`, nginx `return 200` (the
#         ceiling every ratio is taken against) and Node-RED, one after the
#         other in this run;
#   curve the cost curve: fire-and-forget at 1, 10, 50, 200, 1000
#         connections, and at 50 connections with 1 KiB / 64 KiB / 1 MiB bodies;
#   rate  p99 at 50 %, 80 % and 100 % of the peak (the c50 figures of this
#         run), fire-and-forget and synchronous, from tests/bench/rategen.c:
#         a constant-rate generator (Debian has no wrk2), latency counted
#         from each request's due time;
#   out   webhook -> one outbound POST to a local nginx, ~1,000 in flight;
#   park  N parked transactions (distinct match values), then random
#         resumes with N parked and with 1,000 parked;
#   door  fire-and-forget with verify = github on a 1 KiB body,
#         beside the same webhook without verify, in one engine.
#   carrier N orders parked, one callback each, half before the
#         park (kept by `early`), half after, at full rate; every
#         callback delivered exactly once (tests/bench/carrier.py).
# The parts with their own sections (door, carrier, ops, pg) run first, then
# the main table's parts back to back.  It prints a summary table and
# rewrites the generated section of docs/BENCHMARKS.md (between the BENCH:BEGIN / BENCH:END markers; the door's
# figures between BENCH:DOOR:BEGIN / BENCH:DOOR:END, so BENCH_ONLY=door
# leaves the others as they are).
#
# Knobs (environment):
#   BENCH_ONLY="ff sync curve rate out park door carrier ops pg"   which parts to run
#   (ops: issue 12, tests/bench/ops_bench.py - search, admin reads and the
#   purge with 1,000,000 stored transactions; its own section of
#   BENCHMARKS.md between BENCH:OPS:BEGIN / BENCH:OPS:END)
#   (pg: issue 15, tests/bench/pg_bench.py - one, two and three nodes on one
#   PostgreSQL beside SQLite, fire-and-forget and resume, and the time from
#   kill -9 of a node to its runs taken over; its own section of
#   BENCHMARKS.md between BENCH:PG:BEGIN / BENCH:PG:END)
#   BENCH_DURATION=10   seconds per measured wrk run    BENCH_WARMUP=2 (seconds)
#   BENCH_CONNS=50      wrk connections (ff, sync, park) BENCH_OUT_CONNS=1000 (out)
#   BENCH_CURVE_CONNS="1 10 50 200 1000"  BENCH_CURVE_DURATION=5 (seconds per point)
#   BENCH_RATE_DURATION=8  seconds per rate-limited run  BENCH_PERF=1 (perf profile)
#   BENCH_PARKED=1000000  transactions to park           BENCH_PARKED_SMALL=1000
#   BENCH_PARK_MAX=300  seconds allowed for parking (what is parked by then is used)
#   BENCH_RIG=/work/shared/bench/peers/run_peers.sh      BENCH_RIG_RUNS=2
#   BENCH_PEERS_DIR=/tmp/hookwork-bench-peers (Node-RED is installed there once, from npm)
#   BENCH_NODERED=1     set 0 to skip Node-RED (the hookwork sync figure is still measured)
#   BENCH_DOC=docs/BENCHMARKS.md  (BENCH_DOC= to not write it)
#   BENCH_CARRIER=10000  orders of the carrier part   BENCH_CARRIER_CONNS=50
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/bench
ONLY=${BENCH_ONLY:-"ff sync curve rate out park door carrier ops pg"}
DUR=${BENCH_DURATION:-10}
WARM=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-50}
OUT_CONNS=${BENCH_OUT_CONNS:-1000}
PARKED=${BENCH_PARKED:-1000000}
PARKED_SMALL=${BENCH_PARKED_SMALL:-1000}
PARK_MAX=${BENCH_PARK_MAX:-300}
RIG=${BENCH_RIG:-/work/shared/bench/peers/run_peers.sh}
RIG_RUNS=${BENCH_RIG_RUNS:-2}
PEERS_DIR=${BENCH_PEERS_DIR:-/tmp/hookwork-bench-peers}
NODERED=${BENCH_NODERED:-1}
DOC=${BENCH_DOC-$ROOT/docs/BENCHMARKS.md}
CURVE_CONNS=${BENCH_CURVE_CONNS:-"1 10 50 200 1000"}
CURVE_DUR=${BENCH_CURVE_DURATION:-5}
RATE_DUR=${BENCH_RATE_DURATION:-8}
PERF=${BENCH_PERF:-1}
WRK_TIMEOUT=10s
T_START=$(date +%s)

log() { printf '# [%4ss] %s\n' "$(( $(date +%s) - T_START ))" "$*" >&2; }
die() { log "error: $*"; exit 1; }
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }

# ------------------------------------------------------------------ set-up
for t in wrk nginx curl python3; do
  command -v "$t" >/dev/null || {
    log "installing wrk nginx-light curl python3"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light curl python3 >/dev/null \
      || die "cannot install $t"
    break
  }
done
HAVE_SQLITE=0; command -v sqlite3 >/dev/null && HAVE_SQLITE=1
[ -x "$ROOT/hookwork" ] || die "build ./hookwork first (make)"

TMP=$(mktemp -d /tmp/hookwork-bench.XXXXXX)
PIDS=()            # every background process this script started
RESULTS=$TMP/results   # key=value lines, read when the report is written
: > "$RESULTS"

tree_pids() { local p=$1 c; echo "$p"; for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done; }
stop_pid() {  # TERM the process (and, if it lingers, KILL its tree); bounded wait
  local pid=$1 i tree
  [ -n "$pid" ] && [ -d /proc/"$pid" ] || return 0
  tree=$(tree_pids "$pid")
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do [ -d /proc/"$pid" ] || break; sleep 0.2; done
  for p in $tree; do [ -d /proc/"$p" ] && kill -KILL "$p" 2>/dev/null; done
  wait "$pid" 2>/dev/null
  return 0
}
cleanup() {
  local p
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  [ -n "${TMP:-}" ] && [ -d "$TMP" ] && rm -rf "$TMP"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# The binary and its Lua modules are copied first, so a rebuild during the
# run cannot change what is measured.
mkdir -p "$TMP/bin"
cp "$ROOT/hookwork" "$TMP/bin/hookwork"
cp -r "$ROOT/lua" "$TMP/bin/lua"
HW=$TMP/bin/hookwork
RATEGEN=$TMP/bin/rategen
cc -std=c11 -O2 -Wall -o "$RATEGEN" "$HERE/rategen.c" 2>"$TMP/rategen.err" \
  || { log "cannot build tests/bench/rategen.c: $(cat "$TMP/rategen.err")"; RATEGEN=""; }
export HOOKWORK_LUA_DIR=$TMP/bin/lua
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD -- core lua 2>/dev/null || COMMIT="$COMMIT + uncommitted changes in core/ or lua/"
cpu_stat() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6, $9}' /proc/stat; }  # total idle+iowait steal
CPU0=$(cpu_stat)
unset HOOKWORK_ADMIN_TOKEN

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port_busy() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

mb() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
proc_kb() { awk -v f="$2:" '$1==f{print $2}' /proc/"$1"/status 2>/dev/null || echo 0; }
reset_hwm() { echo 5 > /proc/"$1"/clear_refs 2>/dev/null || true; }
put() { echo "$1=$2" >> "$RESULTS"; }                     # record a figure
get() { awk -F= -v k="$1" '$1==k{v=substr($0,length(k)+2)} END{print (v==""?"n/a":v)}' "$RESULTS"; }
field() { sed -nE "s/.*[ ^]$2=([^ ]+).*/\1/p" <<<" $1"; }   # field LINE key

# run_wrk OUTFILE wrk-args... : bounded wrk; OUTFILE gets its output; echoes the RESULT line
run_wrk() {
  local out=$1; shift
  local d; d=$(sed -nE 's/.*-d ?([0-9]+)s?( .*|$)/\1/p' <<<"$*")
  timeout -s INT -k 10 $(( ${d:-10} + 30 )) wrk "$@" >"$out" 2>&1
  grep '^RESULT' "$out" | tail -n 1
}

# --------------------------------------------------------------- nginx
NGX_PID=""
start_nginx() {  # dir port workers
  local d=$1 port=$2 w=$3 i
  mkdir -p "$d"
  sed -e "s#__WORKERS__#$w#" -e "s#__DIR__#$d#g" -e "s#__PORT__#$port#" \
    "$HERE/nginx.conf.tmpl" > "$d/nginx.conf"
  nginx -e stderr -c "$d/nginx.conf" -p "$d" >"$d/out.log" 2>&1 &
  NGX_PID=$!; PIDS+=("$NGX_PID")
  for ((i = 0; i < 50; i++)); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/")" = 200 ] && return 0
    sleep 0.1
  done
  log "nginx did not start: $(cat "$d/out.log" "$d/error.log" 2>/dev/null)"
  return 1
}

# --------------------------------------------------------------- engine
ENG_PID=""; ENG_ADMIN=""; ENG_DATA=""; ENG_LISTEN=""; ENG_ARGS=""
# start_engine NAME CYCLEFILE [VAR=value ...]: fresh cycles + data dirs
# (ENG_ARGS: more command-line options, e.g. --max-body)
start_engine() {
  local name=$1 cyc=$2 i; shift 2
  local d=$TMP/$name
  mkdir -p "$d/cycles" "$d/data"
  cp "$HERE/cycles/$cyc" "$d/cycles/"
  ENG_DATA=$d/data
  ENG_LISTEN=127.0.0.1:$(free_port); ENG_ADMIN=127.0.0.1:$(free_port)
  # shellcheck disable=SC2086
  env "$@" "$HW" run --cycles "$d/cycles" --data "$ENG_DATA" --listen "$ENG_LISTEN" \
    --admin "$ENG_ADMIN" $ENG_ARGS 2>>"$d/engine.log" &
  ENG_PID=$!; PIDS+=("$ENG_PID")
  for ((i = 0; i < 100; i++)); do
    curl -sf "http://$ENG_ADMIN/healthz" >/dev/null 2>&1 && return 0
    [ -d /proc/"$ENG_PID" ] || break
    sleep 0.1
  done
  log "engine $name did not start: $(tail -n 20 "$d/engine.log")"
  return 1
}
stop_engine() { stop_pid "$ENG_PID"; ENG_PID=""; }
hook_url() {  # cycle step -> the webhook URL from GET /api/cycles
  curl -s "http://$ENG_ADMIN/api/cycles" | python3 -c '
import json, sys
for c in json.load(sys.stdin):
    if c["name"] == sys.argv[1]:
        for w in c["webhooks"]:
            if w["step"] == sys.argv[2]: print(w["url"])' "$1" "$2"
}
sql() {  # query the engine's store (read-only use, WAL readers do not block it)
  sqlite3 -batch -noheader -cmd ".timeout 10000" "$ENG_DATA/hookwork.db" "$1" 2>/dev/null
}
tx_count() {  # all transactions (sqlite3, or the newest id from the admin API: ids count up from 1)
  if [ $HAVE_SQLITE = 1 ]; then sql "select count(*) from tx"; return; fi
  curl -s "http://$ENG_ADMIN/api/transactions?limit=1" |
    python3 -c 'import json,sys; l=json.load(sys.stdin); print(int(l[0]["id"]) if l else 0)'
}
state_count() {  # STATE
  if [ $HAVE_SQLITE = 1 ]; then sql "select count(*) from tx where state='$1'"; return; fi
  curl -s "http://$ENG_ADMIN/metrics" | awk -v s="state=\"$1\"" 'index($0,"hookwork_transactions{") && index($0,s){n+=$2} END{print n+0}'
}
wait_drained() {  # until no transaction is running (max $1 s); echoes seconds waited
  local max=${1:-60} t0=$(date +%s.%N) i
  for ((i = 0; i < max * 5; i++)); do
    [ "$(state_count running)" = 0 ] && break
    sleep 0.2
  done
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'
}
metric() {  # NAME-prefix (sum of matching series) from /metrics
  curl -s "http://$ENG_ADMIN/metrics" | awk -v m="$1" 'index($0,m)==1{n+=$NF} END{printf "%.6f", n+0}'
}
mfile() { awk -v m="$2" 'index($0,m)==1{n+=$NF} END{printf "%.6f", n+0}' "$1"; }  # FILE NAME-prefix
# sched_snap PID: one line per thread: tid name cpu-ns runqueue-wait-ns (/proc/PID/task/*/schedstat)
sched_snap() {
  local t
  for t in /proc/"$1"/task/*; do
    echo "${t##*/} $(tr -c 'A-Za-z0-9_\n-' _ < "$t/comm" 2>/dev/null) $(cut -d' ' -f1,2 "$t/schedstat" 2>/dev/null)"
  done
}
# sched_delta BEFORE AFTER PID N -> per request, in µs: "loop_cpu loop_wait writer_cpu writer_wait
# others_cpu others_wait" (the loop is the main thread; the writer the thread named hw-writer)
sched_delta() {
  join <(sort "$1") <(sort "$2") | awk -v pid="$3" -v n="$4" '
    { c = $6 - $3; w = $7 - $4
      if ($1 == pid) { lc += c; lw += w } else if ($2 == "hw-writer") { wc += c; ww += w } else { oc += c; ow += w } }
    END { if (n > 0) printf "%.1f %.1f %.1f %.1f %.1f %.1f", lc/n/1000, lw/n/1000, wc/n/1000, ww/n/1000, oc/n/1000, ow/n/1000
          else print "n/a n/a n/a n/a n/a n/a" }'
}

# ================================================================ 1. ff
bench_ff() {
  local line url before after stored ok diff m0 m1 n lc lw wc ww oc ow
  log "== fire-and-forget: wrk -t1 -c$CONNS -d${DUR}s, POST small JSON"
  start_engine ff bench_ff.lua || return
  line=$(WRK_METHOD=GET run_wrk "$TMP/ff-healthz-warm.txt" -t1 -c"$CONNS" -d"${WARM}s" \
    --timeout $WRK_TIMEOUT -s "$HERE/wrk_report.lua" "http://$ENG_ADMIN/healthz")
  line=$(WRK_METHOD=GET run_wrk "$TMP/ff-healthz.txt" -t1 -c"$CONNS" -d"${DUR}s" \
    --timeout $WRK_TIMEOUT -s "$HERE/wrk_report.lua" "http://$ENG_ADMIN/healthz")
  log "hookwork GET /healthz: $line"
  put ff.healthz.rps "$(field "$line" rps)"; put ff.healthz.p50 "$(field "$line" p50_ms)"
  put ff.healthz.p99 "$(field "$line" p99_ms)"

  url=$(hook_url bench_ff in)
  [ -n "$url" ] || { log "no webhook URL for bench_ff"; stop_engine; return; }
  run_wrk "$TMP/ff-warm.txt" -t1 -c"$CONNS" -d"${WARM}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_report.lua" "$url" >/dev/null
  wait_drained 60 >/dev/null
  before=$(tx_count)
  curl -s "http://$ENG_ADMIN/metrics" > "$TMP/ff-metrics-0.txt"
  sched_snap "$ENG_PID" > "$TMP/ff-sched-0.txt"
  line=$(run_wrk "$TMP/ff.txt" -t1 -c"$CONNS" -d"${DUR}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_report.lua" "$url")
  log "hookwork fire-and-forget: $line"
  put ff.rps "$(field "$line" rps)"; put ff.p50 "$(field "$line" p50_ms)"
  put ff.p99 "$(field "$line" p99_ms)"; put ff.max "$(field "$line" max_ms)"
  put ff.drain "$(wait_drained 120)"
  sched_snap "$ENG_PID" > "$TMP/ff-sched-1.txt"
  curl -s "http://$ENG_ADMIN/metrics" > "$TMP/ff-metrics-1.txt"
  after=$(tx_count)
  put ff.rss "$(mb "$(proc_kb "$ENG_PID" VmHWM)")"
  ok=$(( $(field "$line" reqs) - $(field "$line" non2xx) ))
  stored=$(( after - before )); diff=$(( stored - ok ))
  put ff.accepted "$ok"; put ff.stored "$stored"
  put ff.notdone "$(( $(tx_count) - $(state_count completed) ))"
  # wrk counts answers it received; requests still in flight when it stopped
  # (at most one per connection) may be stored without being counted.
  if [ "$diff" -ge 0 ] && [ "$diff" -le "$CONNS" ]; then put ff.durable yes; else put ff.durable no; fi
  log "202s counted by wrk: $ok; transactions stored meanwhile: $stored (difference $diff, in flight <= $CONNS)"
  # where the time went, per stored transaction (the run and its backlog included)
  n=$stored
  read -r lc lw wc ww oc ow <<<"$(sched_delta "$TMP/ff-sched-0.txt" "$TMP/ff-sched-1.txt" "$ENG_PID" "$n")"
  put ff.loop_cpu_us "$lc"; put ff.loop_wait_us "$lw"; put ff.writer_cpu_us "$wc"; put ff.writer_wait_us "$ww"
  put ff.other_cpu_us "$oc"; put ff.other_wait_us "$ow"
  m0=$(mfile "$TMP/ff-metrics-0.txt" hookwork_lua_allocations_total)
  m1=$(mfile "$TMP/ff-metrics-1.txt" hookwork_lua_allocations_total)
  put ff.allocs "$(awk -v a="$m0" -v b="$m1" -v n="$n" 'BEGIN{if (n > 0) printf "%.1f", (b - a) / n; else print "n/a"}')"
  put ff.iter_p50 "$(hist_quantile "$TMP/ff-metrics-0.txt" "$TMP/ff-metrics-1.txt" 0.5 hookwork_loop_iteration_seconds)"
  put ff.iter_p99 "$(hist_quantile "$TMP/ff-metrics-0.txt" "$TMP/ff-metrics-1.txt" 0.99 hookwork_loop_iteration_seconds)"
  put ff.iter_n "$(awk -v a="$(mfile "$TMP/ff-metrics-0.txt" hookwork_loop_iteration_seconds_count)" \
    -v b="$(mfile "$TMP/ff-metrics-1.txt" hookwork_loop_iteration_seconds_count)" -v n="$n" \
    'BEGIN{if (n > 0) printf "%.1f", n / (b - a); else print "n/a"}')"
  put ff.iter_max "$(awk '{printf "%.1f", $1 * 1000}' <<<"$(mfile "$TMP/ff-metrics-1.txt" hookwork_loop_iteration_max_seconds)")"
  put ff.itercpu_p50 "$(hist_quantile "$TMP/ff-metrics-0.txt" "$TMP/ff-metrics-1.txt" 0.5 hookwork_loop_iteration_cpu_seconds)"
  put ff.itercpu_p99 "$(hist_quantile "$TMP/ff-metrics-0.txt" "$TMP/ff-metrics-1.txt" 0.99 hookwork_loop_iteration_cpu_seconds)"
  put ff.itercpu_max "$(awk '{printf "%.1f", $1 * 1000}' <<<"$(mfile "$TMP/ff-metrics-1.txt" hookwork_loop_iteration_cpu_max_seconds)")"
  put ff.c_path "$(awk -v a="$(mfile "$TMP/ff-metrics-0.txt" 'hookwork_accept_path_total{path="c"')" \
    -v b="$(mfile "$TMP/ff-metrics-1.txt" 'hookwork_accept_path_total{path="c"')" -v n="$n" \
    'BEGIN{if (n > 0) printf "%.0f", 100 * (b - a) / n; else print "n/a"}')"
  [ "$PERF" = 1 ] && profile_loop "$url"
  stop_engine
}

# profile_loop URL: perf record of the loop thread (the engine's main
# thread) under the same fire-and-forget load; the top symbols go to the report
profile_loop() {
  local url=$1 secs=5 wpid
  command -v perf >/dev/null || { log "perf missing: no profile"; return; }
  run_wrk "$TMP/perf-wrk.txt" -t1 -c"$CONNS" -d"$(( secs + 3 ))s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_report.lua" "$url" >/dev/null &
  wpid=$!; PIDS+=("$wpid")
  sleep 1
  timeout -s INT $(( secs + 10 )) perf record -q -g -F 999 -t "$ENG_PID" -o "$TMP/perf.data" \
    -- sleep "$secs" >"$TMP/perf-record.log" 2>&1
  wait "$wpid" 2>/dev/null
  perf report -i "$TMP/perf.data" --stdio --no-children -g none --sort dso,symbol --percent-limit 0.8 \
    2>/dev/null | grep -v '^#' | grep -v '^$' | sed -E 's/([[:space:]]+-)+[[:space:]]*$//' | head -n 30 > "$TMP/perf-top.txt"
  perf report -i "$TMP/perf.data" --stdio --no-children -g none --sort dso 2>/dev/null \
    | awk '!/^#/ && NF >= 2 && $1 ~ /%$/ {printf "%s%s %s", sep, $2, $1; sep = ", "}' | head -c 400 > "$TMP/perf-dso.txt"
  put perf.samples "$(perf report -i "$TMP/perf.data" --stdio 2>/dev/null | sed -nE 's/^# Samples: ([0-9.]+[KM]?).*/\1/p' | head -n 1)"
  put perf.wrk "$(field "$(grep '^RESULT' "$TMP/perf-wrk.txt")" rps)"
  [ -s "$TMP/perf-top.txt" ] || log "perf gave no profile: $(tail -n 3 "$TMP/perf-record.log")"
}

# ================================================================ 2. sync
bench_sync() {
  local url d listen admin out systems line
  log "== synchronous + the ceiling + the peer: the rig, wrk -t1 -c$CONNS -d${DUR}s x$RIG_RUNS"
  start_engine sync bench_sync.lua || return
  d=$TMP/sync; listen=$ENG_LISTEN; admin=$ENG_ADMIN
  url=$(hook_url bench_sync in)
  # our own check that the flow answers as expected
  log "sample answer: $(curl -s -X POST -H 'Content-Type: application/json' -d '{"order_id":"A1","amount":12.5}' "$url")"
  stop_engine   # the rig starts it again (same data dir, so the same URL)
  [ -n "$url" ] || { log "no webhook URL for bench_sync"; return; }
  put sync.url "$url"
  systems="custom nginx-1w"
  if [ "$NODERED" = 1 ]; then
    if port_busy 1880; then log "port 1880 is busy: Node-RED skipped"
    elif ! command -v npm >/dev/null; then log "npm missing: Node-RED skipped"
    else systems="custom nginx-1w nodered"; fi
  fi
  if port_busy 18080; then log "port 18080 (the rig's nginx) is busy: the rig's ceiling is skipped"; systems=${systems/ nginx-1w/}; fi
  if [ ! -f "$RIG" ]; then
    log "peer rig $RIG missing: the ceiling is measured here (same nginx, same wrk), no Node-RED"
    ceiling_here
    return
  fi
  mkdir -p "$PEERS_DIR"
  out=$TMP/rig.out
  CUSTOM_NAME=hookwork CUSTOM_URL="$url" \
  CUSTOM_START="$HW run --cycles $d/cycles --data $d/data --listen $listen --admin $admin" \
  SYSTEMS="$systems" PEERS_DIR="$PEERS_DIR" THREADS=1 CONNS="$CONNS" DURATION="${DUR}s" \
  WARMUP=3s RUNS="$RIG_RUNS" \
    timeout -k 10 900 bash "$RIG" >"$out" 2>"$TMP/rig.err" &
  PIDS+=("$!"); wait "$!"
  cat "$out" >&2; grep -v '^# ' "$TMP/rig.err" | tail -n 20 >&2
  put rig.systems "$systems"
  # name run req/s p50_ms p99_ms errs non2xx peakMB startMB procs -> mean of runs, max RSS
  local sys key
  for sys in hookwork nginx-1w nodered; do
    key=sync.$sys
    [ "$sys" = nginx-1w ] && key=ceil
    awk -v s="$sys" '$1==s && $3+0>0 {n++; r+=$3; a+=$4; b+=$5; e+=$6+$7; if ($8>m) m=$8}
      END{ if (n) printf "rps=%.1f p50=%.2f p99=%.2f errs=%d rss=%d runs=%d\n", r/n, a/n, b/n, e, m, n }' "$out" \
      > "$TMP/$sys.sum"
    if [ -s "$TMP/$sys.sum" ]; then
      line=$(cat "$TMP/$sys.sum")
      put "$key.rps" "$(field "$line" rps)"; put "$key.p50" "$(field "$line" p50)"
      put "$key.p99" "$(field "$line" p99)"; put "$key.rss" "$(field "$line" rss)"
      put "$key.errs" "$(field "$line" errs)"; put "$key.runs" "$(field "$line" runs)"
      put "$key.runs_rps" "$(awk -v s="$sys" '$1==s{printf "%s%s", sep, $3; sep=", "}' "$out")"
      put "$key.runs_p99" "$(awk -v s="$sys" '$1==s{printf "%s%s", sep, $5; sep=", "}' "$out")"
    fi
  done
  [ "$(get ceil.rps)" = n/a ] && { log "the rig gave no nginx figure: measured here"; ceiling_here; }
  [ "$(get ceil.src)" = n/a ] && put ceil.src "the peer rig (run_peers.sh, nginx-1w), mean of $(get ceil.runs) runs"
  put sync.nodered.version "$(cat "$PEERS_DIR/nodered/node_modules/node-red/package.json" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null)"
}

# Without the rig: nginx `return 200`, 1 worker, under the same wrk as the rest.
ceiling_here() {
  local port line
  port=$(free_port)
  start_nginx "$TMP/nginx-ceiling" "$port" 1 || return
  run_wrk "$TMP/ceil-warm.txt" -t1 -c"$CONNS" -d"${WARM}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_report.lua" "http://127.0.0.1:$port/hook" >/dev/null
  line=$(run_wrk "$TMP/ceil.txt" -t1 -c"$CONNS" -d"${DUR}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_report.lua" "http://127.0.0.1:$port/hook")
  log "nginx return 200 (1 worker): $line"
  put ceil.rps "$(field "$line" rps)"; put ceil.p50 "$(field "$line" p50_ms)"
  put ceil.p99 "$(field "$line" p99_ms)"; put ceil.src "run.sh's own nginx (no rig)"
  stop_pid "$NGX_PID"
}

# ================================================================ curve
bench_curve() {
  local url c line body size k warmed=0
  log "== the cost curve: fire-and-forget at $CURVE_CONNS connections, then 1 KiB / 64 KiB / 1 MiB bodies"
  start_engine curve bench_ff.lua || return
  url=$(hook_url bench_ff in)
  [ -n "$url" ] || { log "no webhook URL for the curve"; stop_engine; return; }
  run_wrk "$TMP/curve-warm.txt" -t1 -c50 -d"${WARM}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_report.lua" "$url" >/dev/null
  for c in $CURVE_CONNS; do
    wait_drained 120 >/dev/null
    line=$(run_wrk "$TMP/curve-c$c.txt" -t1 -c"$c" -d"${CURVE_DUR}s" --timeout $WRK_TIMEOUT \
      -s "$HERE/wrk_report.lua" "$url")
    log "curve c$c: $line"
    put curve.c$c.rps "$(field "$line" rps)"; put curve.c$c.p50 "$(field "$line" p50_ms)"
    put curve.c$c.p99 "$(field "$line" p99_ms)"
    put curve.c$c.bad "$(( $(field "$line" non2xx) + $(field "$line" errs_connect) + $(field "$line" errs_read) + $(field "$line" errs_timeout) ))"
  done
  put curve.rss "$(mb "$(proc_kb "$ENG_PID" VmHWM)")"
  stop_engine
  # bodies: {"order_id":"A1","amount":12.5,"pad":"xxx..."} of exactly SIZE bytes
  ENG_ARGS="--max-body 2097152"
  start_engine curve-body bench_ff.lua || { ENG_ARGS=""; return; }
  ENG_ARGS=""
  url=$(hook_url bench_ff in)
  for size in 1024 65536 1048576; do
    body=$TMP/body-$size.json
    python3 - "$body" "$size" <<'PY'
import json, sys
b = {"order_id": "A1", "amount": 12.5, "pad": ""}
b["pad"] = "x" * (int(sys.argv[2]) - len(json.dumps(b, separators=(",", ":"))))
open(sys.argv[1], "w").write(json.dumps(b, separators=(",", ":")))
PY
    wait_drained 120 >/dev/null
    [ $warmed = 1 ] || WRK_BODY_FILE=$body run_wrk "$TMP/body-warm.txt" -t1 -c50 -d"${WARM}s" \
      --timeout $WRK_TIMEOUT -s "$HERE/wrk_door.lua" "$url" >/dev/null
    warmed=1
    wait_drained 120 >/dev/null
    line=$(WRK_BODY_FILE=$body run_wrk "$TMP/body-$size.txt" -t1 -c50 -d"${CURVE_DUR}s" \
      --timeout $WRK_TIMEOUT -s "$HERE/wrk_door.lua" "$url")
    log "curve body $size B: $line"
    k=curve.b$size
    put $k.rps "$(field "$line" rps)"; put $k.p50 "$(field "$line" p50_ms)"; put $k.p99 "$(field "$line" p99_ms)"
    put $k.mbs "$(awk -v r="$(field "$line" rps)" -v s="$size" 'BEGIN{printf "%.1f", r * s / 1048576}')"
    put $k.bad "$(( $(field "$line" non2xx) + $(field "$line" errs_connect) + $(field "$line" errs_read) + $(field "$line" errs_timeout) ))"
  done
  put curve.body_rss "$(mb "$(proc_kb "$ENG_PID" VmHWM)")"
  stop_engine
}

# ================================================================ rate
# rate_runs KIND URL PEAK: rategen at 50 %, 80 %, 100 % of PEAK req/s, 50 connections
rate_runs() {
  local kind=$1 url=$2 peak=$3 pct r hostport path line
  hostport=${url#http://}; hostport=${hostport%%/*}; path=/${url#http://*/}
  for pct in 50 80 100; do
    r=$(awk -v p="$peak" -v q="$pct" 'BEGIN{printf "%.0f", p * q / 100}')
    wait_drained 120 >/dev/null
    line=$(timeout -k 10 $(( RATE_DUR + 40 )) "$RATEGEN" "${hostport%:*}" "${hostport##*:}" "$path" "$r" "$CONNS" "$RATE_DUR" 2>&1 | grep '^RESULT')
    log "rate $kind $pct % ($r req/s): $line"
    put rate.$kind.$pct.target "$r"
    put rate.$kind.$pct.rps "$(field "$line" rps)"; put rate.$kind.$pct.p50 "$(field "$line" p50_ms)"
    put rate.$kind.$pct.p99 "$(field "$line" p99_ms)"; put rate.$kind.$pct.p999 "$(field "$line" p999_ms)"
    put rate.$kind.$pct.max "$(field "$line" max_ms)"; put rate.$kind.$pct.late "$(field "$line" late_ms)"
    put rate.$kind.$pct.bad "$(( $(field "$line" non2xx) + $(field "$line" errs) ))"
  done
}
bench_rate() {
  local url peak
  [ -n "$RATEGEN" ] || { log "no rategen: rate-limited runs skipped"; return; }
  peak=$(get curve.c$CONNS.rps); [ "$peak" = n/a ] && peak=$(get ff.rps)
  if num "$peak"; then
    log "== rate-limited fire-and-forget: 50/80/100 % of $peak req/s, $CONNS connections, ${RATE_DUR}s each"
    put rate.ff.peak "$peak"
    start_engine rate-ff bench_ff.lua || return
    url=$(hook_url bench_ff in)
    run_wrk "$TMP/rate-ff-warm.txt" -t1 -c"$CONNS" -d"${WARM}s" --timeout $WRK_TIMEOUT \
      -s "$HERE/wrk_report.lua" "$url" >/dev/null
    [ -n "$url" ] && rate_runs ff "$url" "$peak"
    stop_engine
  fi
  peak=$(get sync.hookwork.rps)
  if num "$peak"; then
    log "== rate-limited synchronous: 50/80/100 % of $peak req/s"
    put rate.sync.peak "$peak"
    start_engine rate-sync bench_sync.lua || return
    url=$(hook_url bench_sync in)
    run_wrk "$TMP/rate-sync-warm.txt" -t1 -c"$CONNS" -d"${WARM}s" --timeout $WRK_TIMEOUT \
      -s "$HERE/wrk_report.lua" "$url" >/dev/null
    [ -n "$url" ] && rate_runs sync "$url" "$peak"
    stop_engine
  fi
}

# ================================================================ 3. out
hist_quantile() {  # FILE-before FILE-after q [metric] -> seconds*1000 (linear inside the bucket)
  python3 - "$1" "$2" "$3" "${4:-hookwork_outbound_seconds}" <<'EOF'
import re, sys
def load(p):
    b = {}
    for l in open(p):
        m = re.match(sys.argv[4] + r'_bucket\{le="([^"]+)"\} (\S+)', l)
        if m: b[float('inf') if m.group(1) == '+Inf' else float(m.group(1))] = float(m.group(2))
    return b
a, z, q = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
les = sorted(z)
cum = [z[l] - a.get(l, 0) for l in les]
tot = cum[-1] if cum else 0
if tot <= 0: print("n/a"); sys.exit()
want, lo, prev = q * tot, 0.0, 0.0
for le, c in zip(les, cum):
    if c >= want:
        if le == float('inf'): print(">%g" % (lo * 1000)); break
        print("%.1f" % ((lo + (le - lo) * (want - prev) / max(c - prev, 1)) * 1000)); break
    lo, prev = le, c
EOF
}
bench_out() {
  local port url line t0 t1 c0 c1 o0 o1 inflight=0 maxin=0 sampler drain
  log "== outbound fan-out (issue 3): wrk -t1 -c$OUT_CONNS -d${DUR}s -> webhook -> POST to nginx"
  port=$(free_port)
  start_nginx "$TMP/nginx-upstream" "$port" 1 || return
  start_engine out bench_out.lua BENCH_OUT_UPSTREAM="http://127.0.0.1:$port/ok" || return
  url=$(hook_url bench_out in)
  [ -n "$url" ] || { log "no webhook URL for bench_out"; stop_engine; stop_pid "$NGX_PID"; return; }
  run_wrk "$TMP/out-warm.txt" -t1 -c"$OUT_CONNS" -d"${WARM}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_report.lua" "$url" >/dev/null
  wait_drained 60 >/dev/null
  curl -s "http://$ENG_ADMIN/metrics" > "$TMP/out-metrics-0.txt"
  c0=$(state_count completed); t0=$(date +%s.%N)
  # sample the transactions still running (= outbound calls in flight: the
  # step does nothing else) once a second while wrk runs
  ( for ((i = 0; i < DUR; i++)); do sleep 1; state_count running; done > "$TMP/out-inflight.txt" ) &
  sampler=$!; PIDS+=("$sampler")
  line=$(run_wrk "$TMP/out.txt" -t1 -c"$OUT_CONNS" -d"${DUR}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_report.lua" "$url")
  c1=$(state_count completed); t1=$(date +%s.%N)
  wait "$sampler" 2>/dev/null
  log "accepts under fan-out: $line"
  drain=$(wait_drained 120)
  curl -s "http://$ENG_ADMIN/metrics" > "$TMP/out-metrics-1.txt"
  o0=$(awk 'index($0,"hookwork_outbound_seconds_count")==1{print $2}' "$TMP/out-metrics-0.txt")
  o1=$(awk 'index($0,"hookwork_outbound_seconds_count")==1{print $2}' "$TMP/out-metrics-1.txt")
  put out.accept_rps "$(field "$line" rps)"; put out.accept_p99 "$(field "$line" p99_ms)"
  put out.accepted "$(( $(field "$line" reqs) - $(field "$line" non2xx) ))"
  put out.tps "$(awk -v a="$c0" -v b="$c1" -v x="$t0" -v y="$t1" 'BEGIN{printf "%.1f", (b-a)/(y-x)}')"
  put out.outbound "$(( ${o1%.*} - ${o0%.*} ))"
  put out.failed "$(state_count failed)"
  put out.nonok "$(curl -s "http://$ENG_ADMIN/metrics" | awk 'index($0,"hookwork_outbound_requests_total{") && !index($0,"status=\"2xx\"") {n+=$NF} END{print n+0}')"
  put out.drain "$drain"
  put out.inflight_max "$(sort -n "$TMP/out-inflight.txt" | tail -n 1)"
  put out.inflight_med "$(sort -n "$TMP/out-inflight.txt" | awk '{a[NR]=$1} END{print (NR? a[int((NR+1)/2)] : "n/a")}')"
  put out.p50 "$(hist_quantile "$TMP/out-metrics-0.txt" "$TMP/out-metrics-1.txt" 0.5)"
  put out.p99 "$(hist_quantile "$TMP/out-metrics-0.txt" "$TMP/out-metrics-1.txt" 0.99)"
  put out.rss "$(mb "$(proc_kb "$ENG_PID" VmHWM)")"
  grep '^hookwork_outbound_seconds' "$TMP/out-metrics-1.txt" > "$TMP/out-hist.txt"
  log "completed $(( c1 - c0 )) transactions while wrk ran; in flight (1/s samples): $(tr '\n' ' ' < "$TMP/out-inflight.txt")"
  stop_engine; stop_pid "$NGX_PID"
}

# ================================================================ 4. park
# park N PREFIX-URL: parks N transactions (ids B1..BN) through HTTP; echoes the RESULT line
park() {
  local n=$1 url=$2 tag=$3 pid i line
  rm -f "$TMP/park-$tag.done"
  WRK_COUNT=$n WRK_DONE_FILE=$TMP/park-$tag.done \
    timeout -s INT -k 10 $(( PARK_MAX + 30 )) wrk -t1 -c"$CONNS" -d"${PARK_MAX}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_park.lua" "$url" >"$TMP/park-$tag.txt" 2>&1 &
  pid=$!; PIDS+=("$pid")
  # wrk's thread stops itself after N answers but wrk waits out -d: end it then
  for ((i = 0; i < (PARK_MAX + 40) * 5; i++)); do
    [ -d /proc/"$pid" ] || break
    [ -f "$TMP/park-$tag.done" ] && { kill -INT "$pid" 2>/dev/null; break; }
    sleep 0.2
  done
  wait "$pid" 2>/dev/null
  grep '^RESULT' "$TMP/park-$tag.txt" | tail -n 1
}
# resume TAG N URL: warm-up, then the measured wrk run; echoes the RESULT line
resume() {
  local tag=$1 n=$2 url=$3
  WRK_N=$n run_wrk "$TMP/resume-$tag-warm.txt" -t1 -c"$CONNS" -d"${WARM}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_resume.lua" "$url" >/dev/null
  wait_drained 60 >/dev/null
  reset_hwm "$ENG_PID"
  WRK_N=$n run_wrk "$TMP/resume-$tag.txt" -t1 -c"$CONNS" -d"${DUR}s" --timeout $WRK_TIMEOUT \
    -s "$HERE/wrk_resume.lua" "$url"
}
bench_park() {
  local u1 u2 line parked n rate
  log "== parked transactions (issue 5): park $PARKED (wrk -c$CONNS), resume random ones"
  start_engine park bench_park.lua || return
  u1=$(hook_url bench_park "new order"); u2=$(hook_url bench_park status)
  [ -n "$u1" ] && [ -n "$u2" ] || { log "no webhook URLs for bench_park"; stop_engine; return; }
  line=$(park "$PARKED" "$u1" big)
  log "parking: $line"
  wait_drained 120 >/dev/null
  parked=$(state_count waiting)
  put park.n "$parked"; put park.non2xx "$(field "$line" non2xx)"
  put park.wrk_rps "$(field "$line" rps)"; put park.p99 "$(field "$line" p99_ms)"
  if [ $HAVE_SQLITE = 1 ]; then
    rate=$(sql "select printf('%.1f', count(*) / (max(parked_at) - min(created))) from tx where state='waiting'")
  else rate=$(field "$line" rps); fi
  put park.rate "$rate"
  put park.rss_parking "$(mb "$(proc_kb "$ENG_PID" VmHWM)")"
  sleep 11   # the engine keeps just-parked snapshots ~10 s; measure after that
  put park.rss_parked "$(mb "$(proc_kb "$ENG_PID" VmRSS)")"
  put park.disk "$(du -sm "$ENG_DATA" | awk '{print $1}')"
  put park.db "$(ls -l "$ENG_DATA"/ | awk '{printf "%s %.0fMB; ", $NF, $5/1048576}' | sed 's/total [^;]*; //')"
  n=$(( parked < PARKED ? parked : PARKED ))
  [ "$parked" -lt "$PARKED" ] && log "only $parked parked within ${PARK_MAX}s; resuming ids 1..$n"
  line=$(resume big "$n" "$u2")
  log "resume with $parked parked: $line"
  put resume.big.rps "$(field "$line" rps)"; put resume.big.p50 "$(field "$line" p50_ms)"
  put resume.big.p99 "$(field "$line" p99_ms)"; put resume.big.non2xx "$(field "$line" non2xx)"
  put resume.big.rss "$(mb "$(proc_kb "$ENG_PID" VmHWM)")"
  put resume.big.rss_life "$(mb "$(awk '$1=="VmHWM:"{print $2}' /proc/"$ENG_PID"/status)")"
  wait_drained 60 >/dev/null
  put park.disk_after "$(du -sm "$ENG_DATA" | awk '{print $1}')"
  stop_engine

  start_engine park-small bench_park.lua || return
  u1=$(hook_url bench_park "new order"); u2=$(hook_url bench_park status)
  line=$(park "$PARKED_SMALL" "$u1" small)
  wait_drained 60 >/dev/null
  parked=$(state_count waiting)
  put park.small.n "$parked"
  line=$(resume small "$PARKED_SMALL" "$u2")
  log "resume with $parked parked: $line"
  put resume.small.rps "$(field "$line" rps)"; put resume.small.p50 "$(field "$line" p50_ms)"
  put resume.small.p99 "$(field "$line" p99_ms)"; put resume.small.non2xx "$(field "$line" non2xx)"
  put resume.small.rss "$(mb "$(proc_kb "$ENG_PID" VmHWM)")"
  stop_engine
}

# ================================================================ 5. door
bench_door() {
  local plain signed body sig line r k url hdr warmed=""
  log "== the door (issue 11): wrk -t1 -c$CONNS -d${DUR}s, 1 KiB JSON, verify = github vs none"
  mkdir -p "$TMP/door"
  body=$TMP/door/body.json
  python3 - "$body" <<'PY'
import json, sys
b = {"order_id": "A1", "amount": 12.5, "pad": ""}
b["pad"] = "x" * (1024 - len(json.dumps(b, separators=(",", ":"))))
open(sys.argv[1], "w").write(json.dumps(b, separators=(",", ":")))
PY
  sig=$(python3 -c 'import hmac, hashlib, sys
print("sha256=" + hmac.new(b"bench-door-secret", open(sys.argv[1], "rb").read(), hashlib.sha256).hexdigest())' "$body")
  put door.body "$(wc -c < "$body")"
  start_engine door bench_door.lua BENCH_GITHUB_SECRET=bench-door-secret || return
  cp "$HERE/cycles/bench_door_github.lua" "$TMP/door/cycles/"
  for ((r = 0; r < 50; r++)); do
    signed=$(hook_url bench_door_github signed); [ -n "$signed" ] && break; sleep 0.1
  done
  plain=$(hook_url bench_door plain)
  [ -n "$plain" ] && [ -n "$signed" ] || { log "no webhook URLs for the door bench"; stop_engine; return; }
  # the signed webhook must refuse a wrong signature and take the right one
  r=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Hub-Signature-256: sha256=00' --data-binary @"$body" "$signed")
  [ "$r" = 401 ] || log "warning: a wrong signature got $r, not 401"
  r=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Hub-Signature-256: $sig" --data-binary @"$body" "$signed")
  [ "$r" = 202 ] || { log "the signed request got $r, not 202"; stop_engine; return; }
  # a warm-up each, then plain, signed, signed, plain: a steady drift of a
  # busy machine (other work, a growing store) hits both alike
  for k in plain signed plain signed signed plain; do
    url=$plain; hdr=""
    [ $k = signed ] && url=$signed && hdr="X-Hub-Signature-256: $sig"
    wait_drained 120 >/dev/null
    case " $warmed " in
      *" $k "*) ;;
      *) WRK_BODY_FILE=$body WRK_HEADER=$hdr run_wrk "$TMP/door-$k-warm.txt" -t1 -c"$CONNS" \
           -d"${WARM}s" --timeout $WRK_TIMEOUT -s "$HERE/wrk_door.lua" "$url" >/dev/null
         warmed="$warmed $k"; continue ;;
    esac
    line=$(WRK_BODY_FILE=$body WRK_HEADER=$hdr run_wrk "$TMP/door-$k.txt" -t1 -c"$CONNS" -d"${DUR}s" \
      --timeout $WRK_TIMEOUT -s "$HERE/wrk_door.lua" "$url")
    log "door $k: $line"
    echo "$line" >> "$TMP/door-$k.lines"
  done
  for k in plain signed; do
    put door.$k.rps "$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^rps=/) {sub("rps=", "", $i); s += $i; n++}}
      END{if (n) printf "%.1f", s / n}' "$TMP/door-$k.lines")"
    put door.$k.runs "$(sed -nE 's/.* rps=([0-9.]+).*/\1/p' "$TMP/door-$k.lines" | paste -sd/ | sed 's#/# / #g')"
    put door.$k.p50 "$(field "$(tail -n 1 "$TMP/door-$k.lines")" p50_ms)"
    put door.$k.p99 "$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^p99_ms=/) {sub("p99_ms=", "", $i); if ($i + 0 > m + 0) m = $i + 0}}
      END{printf "%.3f", m}' "$TMP/door-$k.lines")"
    put door.$k.non2xx "$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^non2xx=/) {sub("non2xx=", "", $i); s += $i}}
      END{print s + 0}' "$TMP/door-$k.lines")"
  done
  put door.rss "$(mb "$(proc_kb "$ENG_PID" VmHWM)")"
  put door.rejected "$(metric 'hookwork_rejected_requests_total{cycle="bench_door_github"' | cut -d. -f1)"
  stop_engine
}

# ================================================================ report helpers
num() { [[ "$1" =~ ^[0-9.]+$ ]]; }
# figures: the machine's figures and the ratios, as of now
figures() {
cmp() {  # a OP b -> yes/no/n/a
  num "$1" && num "$3" || { echo "n/a"; return; }
  awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN{r = (op=="<") ? a<b : (op=="<=") ? a<=b : (op==">=") ? a>=b : a>b; print r ? "yes" : "no"}'
}
calc() { awk "BEGIN{printf \"$1\", $2}" 2>/dev/null; }
ratio() { num "$1" && num "$2" && awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }' || echo "n/a"; }
fmt() { [ "$1" = "n/a" ] || [ -z "$1" ] && echo "n/a" || echo "$1$2"; }

STEAL=$(echo "$CPU0 $(cpu_stat)" | awk '{t=$4-$1; if (t>0) printf "%.0f%% idle, %.0f%% stolen by the hypervisor", 100*($5-$2)/t, 100*($6-$3)/t; else print "n/a"}')
CPU=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)
NOW=$(date -u +%Y-%m-%dT%H:%MZ)
MEM=$(awk '/MemTotal/{printf "%.0f GB", $2/1048576}' /proc/meminfo)

ff_ratio=$(ratio "$(get ff.rps)" "$(get ceil.rps)")
sync_ceil=$(ratio "$(get sync.hookwork.rps)" "$(get ceil.rps)")
sync_ratio=$(ratio "$(get sync.hookwork.rps)" "$(get sync.nodered.rps)")
res_ratio=$(ratio "$(get resume.big.p99)" "$(get resume.small.p99)")
res_rps_ratio=$(ratio "$(get resume.big.rps)" "$(get resume.small.rps)")

}

# write_section FILE BEGIN-MARK END-MARK: FILE's text between the marks of DOC
write_section() {
  python3 - "$DOC" "$1" "$2" "$3" <<'PY'
import os, sys
doc, sec, B, E = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3], sys.argv[4]
text = open(doc).read() if os.path.exists(doc) else "# Benchmarks\n\nRun with `make bench`.\n"
if B not in text or E not in text:
    text = text.rstrip("\n") + "\n\n" + B + "\n" + E + "\n"
head, rest = text.split(B, 1)
tail = rest.split(E, 1)[1]
open(doc, "w").write(head + B + "\n" + sec + E + tail)
PY
}

report_main() {
  local doc=$DOC
  if ! want ff && ! want sync && ! want curve && ! want rate && ! want out && ! want park; then
    return 0  # none of its parts ran: the main section keeps the figures of its own run
  fi
  SECTION=$TMP/section.md
  met() { case "$1" in yes) echo "**met**" ;; no) echo "not met" ;; *) echo "n/a" ;; esac; }
  {
  echo "## Latest run: $NOW"
  echo
  echo "- machine: $(nproc) CPUs, $CPU, $MEM RAM; $(uname -sr); wrk and every server on the same machine, loopback only"
  echo "- CPU over the whole run: $STEAL"
  echo "- commit: $COMMIT; the parts of this table took $(( $(date +%s) - ${T_MAIN:-$T_START} )) s, back to back, $(( ${T_MAIN:-$T_START} - T_START )) s into the run (\`make bench\`, tests/bench/run.sh)"
  echo "- wrk: \`-t1 -c$CONNS -d${DUR}s --timeout $WRK_TIMEOUT\` after a warm-up (fan-out: \`-c$OUT_CONNS\`); POST \`{\"order_id\":\"A1\",\"amount\":12.5}\`; p50/p99 are wrk's latency percentiles; RSS is the engine's VmHWM (peak) from /proc/PID/status"
  echo "- the ceiling: nginx \`return 200\` (1 worker) from $(get ceil.src); the peer rig ran \`SYSTEMS=\"$(get rig.systems)\"\` with hookwork's synchronous webhook as \`custom\`; every ratio below is to figures of this same run"
  echo
  echo "| # | measurement | req/s | ratio | p50 ms | p99 ms | peak RSS MB | notes |"
  echo "|---|---|---:|---:|---:|---:|---:|---|"
  echo "| 0 | nginx \`return 200\` (the ceiling, 1 worker) | $(get ceil.rps) | 1 | $(get ceil.p50) | $(get ceil.p99) | | no store; runs: $(get ceil.runs_rps) |"
  echo "| 0 | Node-RED $(get sync.nodered.version) (http in → function → http response) | $(get sync.nodered.rps) | $(ratio "$(get sync.nodered.rps)" "$(get ceil.rps)") × nginx | $(get sync.nodered.p50) | $(get sync.nodered.p99) | $(get sync.nodered.rss) | the peer (rig); runs: $(get sync.nodered.runs_rps) |"
  echo "| 1 | **fire-and-forget, durable** (202 after the commit) | **$(get ff.rps)** | **$ff_ratio × nginx** | $(get ff.p50) | **$(get ff.p99)** | **$(get ff.rss)** | 202s $(get ff.accepted), stored $(get ff.stored), durable: $(get ff.durable); backlog done $(get ff.drain) s after wrk |"
  echo "| 1 | hookwork GET /healthz (admin; no store, no Lua) | $(get ff.healthz.rps) | $(ratio "$(get ff.healthz.rps)" "$(get ceil.rps)") × nginx | $(get ff.healthz.p50) | $(get ff.healthz.p99) | | the HTTP layer alone |"
  echo "| 2 | **synchronous** (Lua step + respond) | **$(get sync.hookwork.rps)** | **$sync_ceil × nginx, $sync_ratio × Node-RED** | $(get sync.hookwork.p50) | **$(get sync.hookwork.p99)** | $(get sync.hookwork.rss) | rig, mean of $(get sync.hookwork.runs) runs (req/s $(get sync.hookwork.runs_rps); p99 $(get sync.hookwork.runs_p99)) |"
  echo "| 3 | **resume, $(get park.n) parked** | **$(get resume.big.rps)** | **$res_rps_ratio × 1k parked** | $(get resume.big.p50) | **$(get resume.big.p99)** | **$(get resume.big.rss)** | RSS peak during the resume run; non-2xx $(get resume.big.non2xx) |"
  echo "| 3 | resume, $(get park.small.n) parked | $(get resume.small.rps) | 1 | $(get resume.small.p50) | $(get resume.small.p99) | $(get resume.small.rss) | p99 ratio big/small: $res_ratio |"
  echo "| 3 | parking $(get park.n) transactions (wrk -c$CONNS) | $(get park.rate) | | | $(get park.p99) | $(get park.rss_parking) | rate from the store (parked_at − created); RSS once idle $(get park.rss_parked) MB; store on disk $(get park.disk) MB |"
  echo "| 4 | **outbound fan-out**: completed transactions/s, one POST each | **$(get out.tps)** | | $(get out.p50) | $(get out.p99) | **$(get out.rss)** | in flight: median $(get out.inflight_med), max $(get out.inflight_max); outbound latency from hookwork_outbound_seconds; $(get out.outbound) calls, non-2xx/errors $(get out.nonok), failed tx $(get out.failed) |"
  echo "| 4 | accepts (202) while fanning out, wrk -c$OUT_CONNS | $(get out.accept_rps) | | | $(get out.accept_p99) | | backlog done $(get out.drain) s after wrk |"
  echo
  echo "### The cost curve (fire-and-forget, one engine, ${CURVE_DUR} s per point)"
  echo
  echo "| connections | req/s | p50 ms | p99 ms | errors/non-2xx |"
  echo "|---:|---:|---:|---:|---:|"
  for c in $CURVE_CONNS; do
    echo "| $c | $(get curve.c$c.rps) | $(get curve.c$c.p50) | $(get curve.c$c.p99) | $(get curve.c$c.bad) |"
  done
  echo
  echo "| body (50 connections) | req/s | MB/s | p50 ms | p99 ms | errors/non-2xx |"
  echo "|---|---:|---:|---:|---:|---:|"
  for b in 1024:"1 KiB" 65536:"64 KiB" 1048576:"1 MiB"; do
    echo "| ${b#*:} | $(get curve.b${b%%:*}.rps) | $(get curve.b${b%%:*}.mbs) | $(get curve.b${b%%:*}.p50) | $(get curve.b${b%%:*}.p99) | $(get curve.b${b%%:*}.bad) |"
  done
  echo
  echo "Peak RSS: $(get curve.rss) MB over the connection points, $(get curve.body_rss) MB with the bodies (\`--max-body 2097152\` for the 1 MiB one)."
  echo
  echo "### Latency at a fixed rate (50 %, 80 %, 100 % of this run's peak at $CONNS connections)"
  echo
  echo "tests/bench/rategen.c (Debian has no wrk2): request j is due at start + j/rate on connection j mod $CONNS, keep-alive; a request whose connection is still busy goes out when the answer before it arrives, and its latency counts from its due time (no coordinated omission). ${RATE_DUR} s per load, a fresh engine per kind; the peak is the c$CONNS figure of this run (fire-and-forget: the cost curve's; synchronous: the rig's)."
  echo
  echo "| kind | load | target req/s | done req/s | p50 ms | p99 ms | p99.9 ms | max ms | behind schedule at the end ms | p99 < 5 ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for k in ff sync; do
    for pct in 50 80 100; do
      echo "| $k | $pct % | $(get rate.$k.$pct.target) | $(get rate.$k.$pct.rps) | $(get rate.$k.$pct.p50) | $(get rate.$k.$pct.p99) | $(get rate.$k.$pct.p999) | $(get rate.$k.$pct.max) | $(get rate.$k.$pct.late) | $(met "$(cmp "$(get rate.$k.$pct.p99)" '<' 5)") |"
    done
  done
  echo
  echo "### Where the time goes (fire-and-forget, the measured run above)"
  echo
  echo "- per stored transaction: loop thread $(get ff.loop_cpu_us) µs of CPU and $(get ff.loop_wait_us) µs runnable but waiting for a CPU; store writer (hw-writer) $(get ff.writer_cpu_us) µs of CPU, $(get ff.writer_wait_us) µs waiting; the other threads (checkpointer, reader) $(get ff.other_cpu_us) µs of CPU, $(get ff.other_wait_us) µs waiting (/proc/PID/task/*/schedstat, over the measured run and its backlog)"
  echo "- loop iterations, wall time of their work (hookwork_loop_iteration_seconds): p50 $(get ff.iter_p50) ms, p99 $(get ff.iter_p99) ms, longest since start $(get ff.iter_max) ms; the loop thread's CPU per iteration (hookwork_loop_iteration_cpu_seconds): p50 $(get ff.itercpu_p50) ms, p99 $(get ff.itercpu_p99) ms, most $(get ff.itercpu_max) ms; $(get ff.iter_n) requests per iteration"
  echo "- accept path: $(get ff.c_path) % of the measured requests took the C path (hookwork_accept_path_total)"
  echo "- Lua allocations: $(get ff.allocs) per transaction (hookwork_lua_allocations_total: blocks allocated or grown, accept + run + answer)"
  if [ -s "$TMP/perf-top.txt" ]; then
    echo "- perf profile of the loop thread (\`perf record -g -F 999 -t LOOP_TID\`, 5 s under the same wrk load, $(get perf.wrk) req/s while profiled, $(get perf.samples) samples; \`perf report --stdio --no-children --sort dso,symbol\`, entries ≥ 0.8 %; Debian's liblua5.4 has no symbols, so time in the Lua VM shows as addresses in liblua5.4.so):"
    echo
    echo "  by library: $(cat "$TMP/perf-dso.txt" 2>/dev/null)"
    echo
    echo '```'
    cat "$TMP/perf-top.txt"
    echo '```'
  fi
  echo
  echo "### Aims (issue 14) against this run"
  echo
  echo "| aim | measured | met |"
  echo "|---|---|---|"
  echo "| fire-and-forget ≥ 0.5 × nginx | $ff_ratio × ($(get ff.rps) / $(get ceil.rps)) | $(met "$(cmp "$ff_ratio" '>=' 0.5)") |"
  echo "| fire-and-forget p99 < 5 ms (c$CONNS) | $(get ff.p99) ms | $(met "$(cmp "$(get ff.p99)" '<' 5)") |"
  echo "| fire-and-forget peak RSS < 50 MB | $(get ff.rss) MB | $(met "$(cmp "$(get ff.rss)" '<' 50)") |"
  echo "| every 202 is a stored transaction | $(get ff.stored) stored / $(get ff.accepted) counted | $(met "$(get ff.durable)") |"
  echo "| synchronous ≥ 0.35 × nginx | $sync_ceil × | $(met "$(cmp "$sync_ceil" '>=' 0.35)") |"
  echo "| synchronous ≥ 10 × Node-RED | $sync_ratio × | $(met "$(cmp "$sync_ratio" '>=' 10)") |"
  echo "| synchronous p99 < 5 ms (c$CONNS) | $(get sync.hookwork.p99) ms | $(met "$(cmp "$(get sync.hookwork.p99)" '<' 5)") |"
  echo "| resume with 1M parked ≥ 0.8 × the rate with 1k | $res_rps_ratio × ($(get resume.big.rps) / $(get resume.small.rps), $(get park.n) parked) | $(met "$(cmp "$res_rps_ratio" '>=' 0.8)") |"
  echo "| resume with 1M parked p99 < 10 ms | $(get resume.big.p99) ms | $(met "$(cmp "$(get resume.big.p99)" '<' 10)") |"
  echo "| resume with 1M parked RSS < 150 MB | $(get resume.big.rss) MB resuming, $(get park.rss_parking) MB peak while parking | $(met "$(cmp "$(get park.rss_parking)" '<' 150)") |"
  echo "| fan-out ≥ 10,000 completed calls/s with 1k in flight | $(get out.tps) /s (in flight median $(get out.inflight_med)) | $(met "$(cmp "$(get out.tps)" '>=' 10000)") |"
  echo "| fan-out RSS < 100 MB | $(get out.rss) MB | $(met "$(cmp "$(get out.rss)" '<' 100)") |"
  for k in ff sync; do
    for pct in 50 80 100; do
      echo "| $k p99 < 5 ms at $pct % of peak ($(get rate.$k.$pct.target) req/s, fixed rate) | $(get rate.$k.$pct.p99) ms | $(met "$(cmp "$(get rate.$k.$pct.p99)" '<' 5)") |"
    done
  done
  if [ "$(get park.n)" != n/a ] && [ "$(get park.n)" -lt 1000000 ] 2>/dev/null; then
    echo
    echo "Note: this run parked $(get park.n) transactions (BENCH_PARKED=$PARKED), not 1,000,000."
  fi
  } > "$SECTION"
  echo
  cat "$SECTION"
  [ -n "$doc" ] || return 0
  mkdir -p "$(dirname "$doc")"
  write_section "$SECTION" "<!-- BENCH:BEGIN (generated by tests/bench/run.sh) -->" "<!-- BENCH:END -->"
  log "wrote the main section to $doc"
}

# ================================================================ run
# The parts with their own sections first, then the main table's parts back
# to back (the ratios are to the ceiling measured among them), its section
# written as soon as they are done.
want door && bench_door
CARRIER_SECTION=$TMP/carrier.md
if want carrier; then
  log "== the carrier pattern (issue 13): ${BENCH_CARRIER:-10000} orders, callbacks half before, half after the park"
  timeout 900 python3 "$HERE/carrier.py" "$TMP/bin/hookwork" "${BENCH_CARRIER:-10000}" \
    "${BENCH_CARRIER_CONNS:-50}" > "$CARRIER_SECTION" 2> "$TMP/carrier.kv" \
    || log "carrier: not every callback was delivered exactly once (see the section)"
  grep -E '^carrier\.' "$TMP/carrier.kv" >> "$RESULTS"
fi
if want ops; then
  log "== operations on stored work (issue 12): tests/bench/ops_bench.py"
  BENCH_DOC="$DOC" timeout -k 10 900 python3 "$HERE/ops_bench.py" || log "ops bench failed"
fi
if want pg; then
  log "== PostgreSQL and several nodes (issue 15): tests/bench/pg_bench.py"
  HOOKWORK_BIN="$HW" BENCH_DOC="$DOC" BENCH_DURATION="$DUR" BENCH_WARMUP="$WARM" \
    timeout -k 10 900 python3 "$HERE/pg_bench.py" || log "pg bench failed"
fi
T_MAIN=$(date +%s)
want ff && bench_ff
want sync && bench_sync
want curve && bench_curve
want rate && bench_rate
want out && bench_out
want park && bench_park
figures
report_main


# ================================================================ the parts' own sections
figures
DOOR_SECTION=$TMP/door.md
door_cost=n/a
num "$(get door.plain.rps)" && num "$(get door.signed.rps)" &&
  door_cost=$(awk -v a="$(get door.plain.rps)" -v b="$(get door.signed.rps)" 'BEGIN{printf "%.1f", 100*(a-b)/a}')
{
echo "## The door (issue 11): the cost of verify, $NOW"
echo
echo "- $(nproc) CPUs, $CPU; commit $COMMIT; one engine, two cycles: the same fire-and-forget webhook (one trivial step) with \`verify = hw.verify.github{...}\` and without"
echo "- wrk \`-t1 -c$CONNS -d${DUR}s\`, a ${WARM}s warm-up each, then plain, signed, signed, plain (a steady drift hits both alike), the backlog drained before each run; POST of a $(get door.body)-byte JSON body; CPU over the whole bench run: $STEAL"
echo
echo "| webhook | req/s (mean of 2 runs) | runs | p50 ms (last run) | p99 ms (worst run) | non-2xx |"
echo "|---|---:|---|---:|---:|---:|"
echo "| without verify | $(get door.plain.rps) | $(get door.plain.runs) | $(get door.plain.p50) | $(get door.plain.p99) | $(get door.plain.non2xx) |"
echo "| \`verify = github\` (HMAC-SHA256 of the body, constant-time compare) | $(get door.signed.rps) | $(get door.signed.runs) | $(get door.signed.p50) | $(get door.signed.p99) | $(get door.signed.non2xx) |"
echo
door_met=n/a
[ "$door_cost" != n/a ] && door_met=$(awk -v c="$door_cost" 'BEGIN{print (c < 15) ? "yes" : "no"}')
echo "Verification costs $door_cost % of throughput (aim: under 15 %; met: $door_met; the difference between a webhook's two runs shows the noise of this machine). Peak RSS $(get door.rss) MB. A request with a wrong signature was refused before the runs (rejections counted: $(get door.rejected))."
} > "$DOOR_SECTION"

if want door; then
  echo; cat "$DOOR_SECTION"
  [ -n "$DOC" ] && write_section "$DOOR_SECTION" "<!-- BENCH:DOOR:BEGIN (generated by tests/bench/run.sh) -->" \
    "<!-- BENCH:DOOR:END -->" && log "wrote the door's figures to $DOC"
fi
if want carrier && [ -s "$CARRIER_SECTION" ]; then
  echo; cat "$CARRIER_SECTION"
  [ -n "$DOC" ] && write_section "$CARRIER_SECTION" "<!-- BENCH:CARRIER:BEGIN (generated by tests/bench/run.sh) -->" \
    "<!-- BENCH:CARRIER:END -->" && log "wrote the carrier figures to $DOC"
fi
log "done in $(( $(date +%s) - T_START )) s"
