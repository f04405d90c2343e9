#!/usr/bin/env python3
"""PostgreSQL and several nodes (issue 15): `make bench` part "pg"
(`BENCH_ONLY=pg make bench`; never in `make test`).

On one machine, against one throwaway PostgreSQL (tests/e2e/pgserver.py:
Debian's server, fsync on, default settings otherwise):

1. fire-and-forget (tests/bench/cycles/bench_ff.lua): SQLite, then 1, 2 and 3
   nodes on PostgreSQL. With k nodes, k wrk processes run at once, one per
   node, each with BENCH_CONNS/k connections: the sum is the figure (no
   balancer in the way). After each run every 2xx must be a stored
   transaction.
2. resume (bench_park.lua): BENCH_PG_PARKED orders parked, then random
   resumes spread over the nodes the same way.
3. takeover: three nodes with --lease BENCH_PG_LEASE (2 s); BENCH_PG_INFLIGHT
   requests sent to node 2 whose runs wait on a slow local HTTP server; node
   2 is killed with SIGKILL while they wait, the server turns fast, and the
   time from the kill to the last of those transactions completed on
   another node is measured (with how many outbound calls were repeated: the
   at-least-once step that was running).
CPU seconds used by PostgreSQL, the engines and wrk are taken from /proc
for each run, to show where the two cores went.

Prints `RESULT name value unit` lines and rewrites the section of
docs/BENCHMARKS.md between BENCH:PG:BEGIN / BENCH:PG:END (BENCH_DOC= to not
write it).
"""

import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "bench")
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import pgserver  # noqa: E402

BIN = os.environ.get("HOOKWORK_BIN") or os.path.join(ROOT, "hookwork")
DUR = float(os.environ.get("BENCH_DURATION", "10"))
WARM = float(os.environ.get("BENCH_WARMUP", "2"))
CONNS = int(os.environ.get("BENCH_CONNS", "48"))
PARKED = int(os.environ.get("BENCH_PG_PARKED", "20000"))
LEASE = os.environ.get("BENCH_PG_LEASE", "2")
INFLIGHT = int(os.environ.get("BENCH_PG_INFLIGHT", "200"))
NODES = [int(x) for x in os.environ.get("BENCH_PG_NODES", "1 2 3").split()]
DOC = os.environ.get("BENCH_DOC", os.path.join(ROOT, "docs", "BENCHMARKS.md"))
CLK = os.sysconf("SC_CLK_TCK")

RESULTS = {}
T0 = time.time()


def log(msg):
    print("# [%4.0fs] %s" % (time.time() - T0, msg), file=sys.stderr, flush=True)


def result(name, value, unit=""):
    """One figure: printed with its unit; the report uses the value alone."""
    RESULTS[name] = str(value)
    print(("RESULT %s %s %s" % (name, value, unit)).rstrip(), flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------- CPU accounting

def cpu_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / CLK  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def tree(pid):
    out = [pid]
    try:
        kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], stdout=subprocess.PIPE,
                              text=True).stdout.split()
    except OSError:
        kids = []
    for k in kids:
        out += tree(int(k))
    return out


def cpu_tree(pid):
    """CPU seconds of a process and its live children; PostgreSQL's backends
    come and go with connections, so this is sampled before and after a run
    whose connections stay open."""
    return sum(cpu_of(p) for p in tree(pid))


# ---------------------------------------------------------------- engines

class Node:
    def __init__(self, tmp, name, store=None, env=None, lease=None):
        self.tmp = os.path.join(tmp, name)
        self.cycles = os.path.join(tmp, "cycles")
        self.name = name
        self.store = store
        self.env = dict(os.environ, **(env or {}))
        self.lease = lease
        os.makedirs(self.tmp, exist_ok=True)
        self.port, self.aport = free_port(), free_port()
        self.proc = None

    def start(self):
        cmd = [BIN, "run", "--cycles", self.cycles, "--listen", "127.0.0.1:%d" % self.port,
               "--admin", "127.0.0.1:%d" % self.aport]
        if self.store:
            cmd += ["--store", self.store, "--node", self.name]
            if self.lease:
                cmd += ["--lease", str(self.lease)]
        else:
            cmd += ["--data", os.path.join(self.tmp, "var")]
        logf = open(os.path.join(self.tmp, "engine.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                     env=self.env, cwd=self.tmp)
        logf.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("node %s exited %s: %s" % (self.name, self.proc.returncode, self.log_tail()))
            try:
                if self.get("/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("node %s not healthy: %s" % (self.name, self.log_tail()))

    def log_tail(self, n=15):
        try:
            with open(os.path.join(self.tmp, "engine.log"), "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def get(self, path, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.aport, timeout=timeout)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def hook_path(self, cycle, step):
        deadline = time.time() + 10
        while time.time() < deadline:
            st, body = self.get("/api/cycles")
            for c in json.loads(body) if st == 200 else []:
                if c.get("name") == cycle:
                    for w in c.get("webhooks") or []:
                        if w.get("step") == step and w.get("url"):
                            return urllib.parse.urlsplit(w["url"]).path
            time.sleep(0.2)
        raise SystemExit("no webhook %s/%s on %s" % (cycle, step, self.name))


def post(port, path, body, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class Store:
    """Counts rows in a node's store, SQLite or PostgreSQL."""

    def __init__(self, srv=None, url=None, data=None):
        self.srv, self.url, self.data = srv, url, data

    def rows(self, sql):
        if self.url:
            return self.srv.query(self.url, sql)
        con = sqlite3.connect(os.path.join(self.data, "hookwork.db"), timeout=30)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def states(self):
        return dict(self.rows("SELECT state, count(*) FROM tx GROUP BY state"))

    def drained(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.rows("SELECT (SELECT count(*) FROM tx WHERE state = 'running'), (SELECT count(*) FROM jobs)")
            if tuple(r[0]) == (0, 0):
                return True
            time.sleep(0.5)
        return False


# ---------------------------------------------------------------- wrk

def wrk(port, path, conns, secs, script, env=None):
    args = ["wrk", "-t1", "-c%d" % max(1, conns), "-d%ds" % max(1, int(secs)), "--timeout", "10s",
            "-s", os.path.join(HERE, script), "http://127.0.0.1:%d%s" % (port, path)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, **(env or {})))


def wrk_result(p, secs):
    try:
        out, _ = p.communicate(timeout=secs + 60)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=20)
    m = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if not m:
        raise SystemExit("wrk printed no RESULT line:\n%s" % out[-2000:])
    return {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", m[-1])}


def load(nodes, path, secs, script, env=None, pg_pid=None):
    """wrk against every node at once (CONNS split between them); returns the
    summed figures and the CPU seconds each side used."""
    cpu0 = {"pg": cpu_tree(pg_pid) if pg_pid else 0.0,
            "engines": sum(cpu_of(n.proc.pid) for n in nodes)}
    c0 = os.times()
    t0 = time.time()
    procs = [wrk(n.port, path, CONNS // len(nodes), secs, script, env) for n in nodes]
    res = [wrk_result(p, secs) for p in procs]
    wall = time.time() - t0
    c1 = os.times()  # the wrk processes, waited for above
    out = {
        "rps": sum(r["rps"] for r in res),
        "reqs": sum(r["reqs"] for r in res),
        "non2xx": sum(r["non2xx"] for r in res),
        "errs": sum(r["errs_connect"] + r["errs_read"] + r["errs_write"] + r["errs_timeout"] for r in res),
        "p50": max(r["p50_ms"] for r in res),
        "p99": max(r["p99_ms"] for r in res),
        "wall": wall,
        "cpu_pg": (cpu_tree(pg_pid) if pg_pid else 0.0) - cpu0["pg"],
        "cpu_engines": sum(cpu_of(n.proc.pid) for n in nodes) - cpu0["engines"],
        "cpu_wrk": (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system),
    }
    return out


# ---------------------------------------------------------------- parts

def copy_cycles(dst, names):
    os.makedirs(dst, exist_ok=True)
    for n in names:
        shutil.copy(os.path.join(HERE, "cycles", n), os.path.join(dst, n))


def setup(tmp, backend, k, srv, cycles, lease=None, env=None):
    """k nodes on a fresh store; returns (nodes, Store)."""
    copy_cycles(os.path.join(tmp, "cycles"), cycles)
    if backend == "sqlite":
        n = Node(tmp, "n1", env=env).start()
        return [n], Store(data=os.path.join(n.tmp, "var"))
    url = srv.new_database("bench_")
    r = subprocess.run([BIN, "migrate", "--store", url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit("hookwork migrate failed: %s" % r.stdout)
    nodes = [Node(tmp, "n%d" % (i + 1), store=url, lease=lease, env=env).start() for i in range(k)]
    return nodes, Store(srv, url)


def cpu_text(r):
    busy = (r["cpu_pg"] + r["cpu_engines"] + r["cpu_wrk"]) / (r["wall"] * (os.cpu_count() or 1))
    return "%.0f%% (PostgreSQL %.1f s, nodes %.1f s, wrk %.1f s in %.1f s)" % (
        100 * busy, r["cpu_pg"], r["cpu_engines"], r["cpu_wrk"], r["wall"])


def label(backend, k):
    return "sqlite" if backend == "sqlite" else "pg%d" % k


def bench_ff(srv, backend, k):
    tmp = tempfile.mkdtemp(prefix="hookwork-pgbench-")
    nodes = []
    try:
        nodes, store = setup(tmp, backend, k, srv, ["bench_ff.lua"])
        path = nodes[0].hook_path("bench_ff", "in")
        load(nodes, path, WARM, "wrk_report.lua")
        store.drained(60)
        before = sum(store.states().values())
        r = load(nodes, path, DUR, "wrk_report.lua", pg_pid=srv.proc.pid if backend != "sqlite" else None)
        store.drained(120)
        stored = sum(store.states().values()) - before
        ok2xx = int(r["reqs"] - r["non2xx"])
        name = "ff_" + label(backend, k)
        result(name + "_rps", "%.0f" % r["rps"], "req/s")
        result(name + "_p99", "%.1f" % r["p99"], "ms")
        result(name + "_cpu", cpu_text(r))
        result(name + "_stored", "%s%d of %d" % (
            "" if stored >= ok2xx else "**%d MISSING** " % (ok2xx - stored), stored, ok2xx))
        if r["non2xx"] or r["errs"]:
            result(name + "_errors", "%d non-2xx, %d socket errors" % (r["non2xx"], r["errs"]))
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def bench_resume(srv, backend, k):
    tmp = tempfile.mkdtemp(prefix="hookwork-pgbench-")
    nodes = []
    try:
        nodes, store = setup(tmp, backend, k, srv, ["bench_park.lua"])
        u1 = nodes[0].hook_path("bench_park", "new order")
        u2 = nodes[0].hook_path("bench_park", "status")
        done = os.path.join(tmp, "parked")
        p = wrk(nodes[0].port, u1, CONNS, 600, "wrk_park.lua",
                {"WRK_COUNT": str(PARKED), "WRK_DONE_FILE": done, "WRK_PREFIX": "B"})
        deadline = time.time() + 600
        while not os.path.exists(done) and p.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        park = wrk_result(p, 30)
        store.drained(120)
        parked = store.states().get("waiting", 0)
        name = "resume_" + label(backend, k)
        result(name + "_parked", parked, "waiting")
        result("park_" + label(backend, k) + "_rps", "%.0f" % park["rps"], "req/s")
        n = min(parked, PARKED)
        r = load(nodes, u2, DUR, "wrk_resume.lua", {"WRK_N": str(n), "WRK_PREFIX": "B"},
                 pg_pid=srv.proc.pid if backend != "sqlite" else None)
        result(name + "_rps", "%.0f" % r["rps"], "req/s")
        result(name + "_p99", "%.1f" % r["p99"], "ms")
        result(name + "_cpu", cpu_text(r))
        if r["non2xx"] or r["errs"]:
            result(name + "_errors", "%d non-2xx, %d socket errors" % (r["non2xx"], r["errs"]))
        store.drained(120)
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(tmp, ignore_errors=True)


TAKEOVER_CYCLE = """local hw = require "hookwork"
local target = os.getenv("BENCH_PG_UPSTREAM") or "http://127.0.0.1:1/none"
return hw.cycle {
  name = "takeover",
  steps = {
    hw.webhook { name = "in", fields = { n = "number" } },
    hw.request { name = "call", method = "POST", url = target, timeout = 60,
                 json = function(tx) return { n = tx.data.n } end },
    hw.step { name = "done", run = function(tx) tx.data.done = true end },
  },
}
"""


class SlowServer:
    """A local upstream: answers after `delay` seconds (0 once told), counting
    the calls per request number."""

    def __init__(self):
        self.delay = 30.0
        self.calls = {}
        self.lock = threading.Lock()
        self.fast = threading.Event()
        srv = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    n = json.loads(body).get("n")
                except Exception:
                    n = None
                with srv.lock:
                    srv.calls[n] = srv.calls.get(n, 0) + 1
                srv.fast.wait(srv.delay)
                out = b'{"ok":true}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 1024

            def handle_error(self, *a):
                pass
        self.httpd = S(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/slow" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def seen(self):
        with self.lock:
            return len(self.calls)

    def close(self):
        self.fast.set()
        self.httpd.shutdown()


def bench_takeover(srv):
    tmp = tempfile.mkdtemp(prefix="hookwork-pgbench-")
    os.makedirs(os.path.join(tmp, "cycles"))
    with open(os.path.join(tmp, "cycles", "takeover.lua"), "w") as f:
        f.write(TAKEOVER_CYCLE)
    up = SlowServer()
    nodes = []
    try:
        nodes, store = setup(tmp, "pg", 3, srv, [], lease=LEASE, env={"BENCH_PG_UPSTREAM": up.url})
        path = nodes[1].hook_path("takeover", "in")
        ids = []
        lock = threading.Lock()

        def send(lo, hi):
            for i in range(lo, hi):
                st, body = post(nodes[1].port, path, json.dumps({"n": i}).encode())
                if st == 202:
                    with lock:
                        ids.append(int(json.loads(body)["transaction"]))
        ths = [threading.Thread(target=send, args=(i * INFLIGHT // 4, (i + 1) * INFLIGHT // 4)) for i in range(4)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        deadline = time.time() + 60
        while up.seen() < min(len(ids), 64) and time.time() < deadline:
            time.sleep(0.1)
        in_flight = up.seen()
        t_kill = time.time()
        nodes[1].kill()
        up.fast.set()
        idlist = ",".join(str(i) for i in ids)
        first = last = None
        deadline = t_kill + 120
        while time.time() < deadline:
            done = store.rows("SELECT count(*) FROM tx WHERE id IN (%s) AND state = 'completed'" % idlist)[0][0]
            if done and first is None:
                first = time.time()
            if done == len(ids):
                last = time.time()
                break
            time.sleep(0.05)
        owners = store.rows("SELECT coalesce(owner, '?'), count(*) FROM tx WHERE id IN (%s) GROUP BY 1" % idlist)
        twice = sum(1 for c in up.calls.values() if c > 1)
        result("takeover_acknowledged", len(ids), "requests to node 2")
        result("takeover_in_flight", in_flight, "outbound calls waiting when node 2 was killed")
        if last is None:
            result("takeover_seconds", "not within 120 s")
        else:
            result("takeover_seconds", "%.2f" % (last - t_kill), "s (kill -9 to the last run completed, --lease %s)" % LEASE)
            result("takeover_first_seconds", "%.2f" % (first - t_kill), "s (kill -9 to the first run completed elsewhere)")
        result("takeover_repeated_calls", twice, "(the step running at the kill, at-least-once)")
        result("takeover_owners", ", ".join("%s: %d" % (o, c) for o, c in sorted(owners)))
    finally:
        for n in nodes:
            n.kill() if n.proc and n.proc.poll() is None else None
        up.close()
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- report

def write_doc(path):
    B = "<!-- BENCH:PG:BEGIN (generated by tests/bench/pg_bench.py) -->"
    E = "<!-- BENCH:PG:END -->"
    g = lambda k: RESULTS.get(k, "n/a")  # noqa: E731
    cols = ["sqlite"] + ["pg%d" % k for k in NODES]
    head = ["SQLite, 1 node"] + ["PostgreSQL, %d node%s" % (k, "s" if k > 1 else "") for k in NODES]
    rows = [
        ("fire-and-forget, req/s", "ff_%s_rps"),
        ("fire-and-forget p99, ms", "ff_%s_p99"),
        ("share of the cores used (by whom)", "ff_%s_cpu"),
        ("stored of those acknowledged (plus those in flight at the end)", "ff_%s_stored"),
        ("parking through one node, req/s", "park_%s_rps"),
        ("resume, req/s", "resume_%s_rps"),
        ("resume p99, ms", "resume_%s_p99"),
        ("share of the cores used during resumes", "resume_%s_cpu"),
    ]
    lines = [
        "## PostgreSQL and several nodes (issue 15), %s" % time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
        "",
        "One throwaway PostgreSQL %s on this machine (fsync on, default settings), the nodes, wrk"
        " and PostgreSQL all on the same %d cores. wrk -t1 per node, %d connections in all"
        " split between the nodes, %gs per figure after %gs of warm-up; %d orders parked for the"
        " resumes." % (g("pg_version"), os.cpu_count(), CONNS, DUR, WARM, PARKED),
        "",
        "| | " + " | ".join(head) + " |",
        "|---|" + "---|" * len(head),
    ]
    for title, key in rows:
        lines.append("| %s | %s |" % (title, " | ".join(g(key % c) for c in cols)))
    lines += [
        "",
        "Takeover: three nodes, `--lease %s`; %s requests sent to node 2, %s of their outbound"
        " calls waiting on a slow upstream when node 2 was killed with SIGKILL; the upstream then"
        " answered at once. The first of them completed on another node %s s after the kill, the"
        " last **%s s** after it (polled every 50 ms). Outbound calls sent twice: %s (the step"
        " that was running, at-least-once). Owners afterwards: %s." % (
            LEASE, g("takeover_acknowledged"), g("takeover_in_flight"), g("takeover_first_seconds"),
            g("takeover_seconds"), g("takeover_repeated_calls"), g("takeover_owners")),
        "",
        "What limits these figures: PostgreSQL, every node and wrk share the same %d cores,"
        " and so does other work on this machine (load average %s at the end): the share of"
        " the cores our processes got is in the table. Each PostgreSQL commit ends in an"
        " fdatasync of its WAL (%s fdatasync/s on this disk by pg_test_fsync, one 8 kB write at"
        " a time), and group commit puts every request that arrived meanwhile into the same"
        " one. Several nodes on one"
        " box split the same cores and the one database's WAL: the columns show that two and"
        " three nodes work and what they cost here, not how nodes on their own machines"
        " scale." % (os.cpu_count(), g("loadavg"), g("fdatasync_per_s")),
        "",
    ]
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if B not in text or E not in text:
        text = text.rstrip("\n") + "\n\n" + B + "\n" + E + "\n"
    before, rest = text.split(B, 1)
    open(path, "w").write(before + B + "\n" + "\n".join(lines) + E + rest.split(E, 1)[1])


def fdatasync_rate(srv):
    """pg_test_fsync's fdatasync figure for a file beside the server's data."""
    f = os.path.join(srv.dir, "fsync-test")
    try:
        r = subprocess.run([os.path.join(srv.bindir, "pg_test_fsync"), "-s", "1", "-f", f],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return "n/a"
    finally:
        try:
            os.remove(f)
        except OSError:
            pass
    m = re.search(r"^\s*fdatasync\s+([\d.,]+) ops/sec", r.stdout, re.M)
    return m.group(1).replace(",", "") if m else "n/a"


def main():
    why = pgserver.available()
    if why:
        raise SystemExit("pg bench: %s" % why)
    if not shutil.which("wrk"):
        raise SystemExit("pg bench: wrk is missing (make bench installs it)")
    srv = pgserver.PgServer().start()
    try:
        result("pg_version", srv.query(srv.url(), "SELECT current_setting('server_version')")[0][0])
        result("fdatasync_per_s", fdatasync_rate(srv), "ops/s")
        for part in os.environ.get("BENCH_PG_PARTS", "ff resume takeover").split():
            if part in ("ff", "resume"):
                fn = bench_ff if part == "ff" else bench_resume
                log("== %s: sqlite" % part)
                fn(srv, "sqlite", 1)
                for k in NODES:
                    log("== %s: postgres, %d node(s)" % (part, k))
                    fn(srv, "pg", k)
            elif part == "takeover":
                log("== takeover after kill -9, --lease %s" % LEASE)
                bench_takeover(srv)
        la = os.getloadavg()
        result("loadavg", "%.1f / %.1f / %.1f" % la)
    finally:
        srv.stop()
    if DOC:
        write_doc(DOC)
        log("wrote %s" % DOC)


if __name__ == "__main__":
    main()
