"""Issue 10, the store's promises: one engine per --data, acknowledgements
that never lie (503 + Retry-After while the store cannot commit, service
resumes by itself), shutdown answers, recovery at any size, and the default
connector's allowed_ips kept across rescans and restarts.

Store failures are injected with tests/fault/faultfs.so (LD_PRELOAD; built by
make): writing a mode into its control file makes fsync/fdatasync fail with
EIO, writes fail with ENOSPC, or fsync stall, for files under a path prefix.
"""

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time

from lib import (test, Engine, eq, ok, contains, fail, wait_until, lua_str,
                 run_cli, http_request, REPO, hookwork_bin, not_on_postgres, on_postgres)
from storefault import StoreFault

FF_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "ff",
  steps = {
    hw.webhook { name = "in", fields = { n = "number" } },
    hw.step { name = "mark", run = function(tx) tx.data.done = true end },
  },
}
"""

GUARD_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "guard",
  steps = {
    hw.webhook { name = "in", ip_filtered = true },
    hw.step { name = "s", run = function(tx) end },
  },
}
"""


def db_rows(data_dir, sql, args=()):
    con = sqlite3.connect(os.path.join(data_dir, "hookwork.db"), timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def file_digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


# ---------------------------------------------------------------- one engine per store

@test
def second_engine_on_same_data_refused():
    not_on_postgres("the --data lock is SQLite's; several nodes share one PostgreSQL by design")
    with Engine({"ff.lua": FF_LUA}) as e:
        e.start()
        url = e.hook_url("ff", "in")
        eq(e.post(url, json={"n": 1}).status, 202)
        wait_until(lambda: db_rows(e.data_dir, "SELECT count(*) FROM tx WHERE state='completed'")[0][0] == 1)
        before = {n: file_digest(os.path.join(e.data_dir, n)) for n in ("hookwork.db", "lock")}
        t0 = time.time()
        r = run_cli(["run", "--cycles", e.cycles_dir, "--data", e.data_dir,
                     "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"], timeout=20)
        took = time.time() - t0
        eq(r.returncode, 1, "second engine exit code; stderr: %s" % r.stderr)
        contains(r.stderr.splitlines(), "hookwork: %s is in use by another engine (pid %d)"
                 % (e.data_dir, e.proc.pid))
        ok(took < 5, "refused at once", took)
        after = {n: file_digest(os.path.join(e.data_dir, n)) for n in ("hookwork.db", "lock")}
        eq(after, before, "the second engine wrote nothing")
        # the first engine still serves, with its own ids
        r2 = e.post(url, json={"n": 2})
        eq(r2.status, 202)
        eq(r2.json["transaction"], "2")


@test
def engine_after_kill_takes_the_lock():
    with Engine({"ff.lua": FF_LUA}) as e:
        e.start()
        e.kill()
        e.start()  # the OS dropped the dead engine's lock
        eq(e.post(e.hook_url("ff", "in"), json={"n": 1}).status, 202)


@test
def data_creates_missing_parents():
    not_on_postgres("--data holds no store with --store postgres://")
    with Engine({"ff.lua": FF_LUA}) as e:
        e.data_dir = os.path.join(e.tmp, "deep", "er", "var")
        e.start()
        eq(e.post(e.hook_url("ff", "in"), json={"n": 1}).status, 202)
        ok(os.path.exists(os.path.join(e.data_dir, "hookwork.db")), "store created in the new directory")


# ---------------------------------------------------------------- default connector

@test
def default_connector_put_survives_rescan_and_restart():
    with Engine({"guard.lua": GUARD_LUA}) as e:
        e.start()
        url = e.hook_url("guard", "in")
        eq(e.post(url, json={}).status, 403)  # default: empty list rejects all
        r = e.admin("PUT", "/api/connectors/default", json={"allowed_ips": ["127.0.0.1"]})
        eq(r.status, 200, "PUT default: %r" % r)
        eq(e.post(url, json={}).status, 202)
        # a rescan (another file saved) must not drop the list
        e.write("other.lua", FF_LUA)
        wait_until(lambda: any(c.get("name") == "ff" for c in e.cycles()), msg="rescan")
        time.sleep(0.3)
        eq(e.post(url, json={}).status, 202, "after a rescan")
        eq(e.admin("GET", "/api/connectors/default").json.get("allowed_ips"), ["127.0.0.1"])
        e.restart()
        eq(e.post(e.hook_url("guard", "in"), json={}).status, 202, "after a restart")
        eq(e.admin("GET", "/api/connectors/default").json.get("allowed_ips"), ["127.0.0.1"])


# ---------------------------------------------------------------- faults

class Load:
    """Client threads posting {"n": k}, k unique; every answer is recorded."""

    def __init__(self, url, threads=4, timeout=20):
        self.url, self.threads, self.timeout = url, threads, timeout
        self.results = {}          # k -> (status, headers, json) or ("error", msg)
        self.order = []            # (time, k, status)
        self._k = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ts = []
        self.pad = None

    def _one(self):
        import urllib.parse
        u = urllib.parse.urlsplit(self.url)
        while not self._stop.is_set():
            with self._lock:
                self._k += 1
                k = self._k
            body = json.dumps({"n": k, "pad": self.pad} if self.pad else {"n": k}).encode()
            try:
                r = http_request(u.hostname, u.port, "POST", u.path, body=body,
                                 headers={"Content-Type": "application/json"}, timeout=self.timeout)
                res = (r.status, r.headers, r.json)
            except Exception as ex:  # noqa: BLE001 - a killed engine resets connections
                res = ("error", str(ex), None)
                time.sleep(0.02)
            with self._lock:
                self.results[k] = res
                self.order.append((time.time(), k, res[0]))

    def start(self):
        for _ in range(self.threads):
            t = threading.Thread(target=self._one, daemon=True)
            t.start()
            self._ts.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._ts:
            t.join(self.timeout + 5)

    def count(self, status, since=0):
        with self._lock:
            return sum(1 for (t, k, s) in self.order if s == status and t >= since)

    def keys(self, status):
        with self._lock:
            return {k for k, r in self.results.items() if r[0] == status}


def stored_ns(e, cycle="ff"):
    rows = e.db_rows("SELECT json_extract(data, '$.n'), state FROM tx WHERE cycle = ?", (cycle,),
                     pg="SELECT data::jsonb -> 'n', state FROM tx WHERE cycle = ?")
    out = {}
    for n, state in rows:
        if n in out:
            fail("request n=%s stored twice" % n)
        out[n] = state
    return out


def check_promises(e, load, all_complete=True):
    """Every 202 is stored (and completed), no 503 is stored, no duplicates."""
    acked, refused = load.keys(202), load.keys(503)

    def settled():
        st = stored_ns(e)
        if not all_complete:
            return st
        return st if all(st.get(k) == "completed" for k in acked) else None
    try:
        st = wait_until(settled, timeout=30, msg="every acknowledged request completed")
    except AssertionError:
        st = stored_ns(e)
        bad = {k: st.get(k) for k in acked if st.get(k) != "completed"}
        fail("%d acknowledged requests not completed (first: %s)" % (len(bad), sorted(bad.items())[:5]))
    missing = sorted(acked - set(st))
    eq(missing, [], "acknowledged but not stored")
    lies = sorted(refused & set(st))
    eq(lies, [], "answered 503 but stored")
    return st


def check_503s(load):
    for k, (status, headers, body) in list(load.results.items()):
        if status == 503:
            eq(headers.get("retry-after"), "1", "503 for n=%d has Retry-After: 1" % k)
            ok(body and body.get("error", "").startswith("store unavailable: "),
               "503 body names the store", body)


def fault_round(mode, hold=1.5):
    e = Engine({"ff.lua": FF_LUA})
    fault = StoreFault(e)
    with e:
        e.start()
        url = e.hook_url("ff", "in")
        load = Load(url).start()
        wait_until(lambda: load.count(202) >= 50, msg="first acknowledgements")
        fault.set(mode)
        t_fault = time.time()
        wait_until(lambda: load.count(503, since=t_fault) >= 5, timeout=10,
                   msg="503s while the store fails")
        contains(e.metrics().splitlines(), "hookwork_store_refusing 1")
        time.sleep(hold)
        fault.set("ok")
        t_ok = time.time()
        wait_until(lambda: load.count(202, since=t_ok + 0.1) >= 50, timeout=15,
                   msg="service resumes by itself")
        load.stop()
        contains(e.metrics().splitlines(), "hookwork_store_refusing 0")
        check_503s(load)
        ok(load.count(503) > 0, "some requests were refused")
        others = {r[0] for r in load.results.values()} - {202, 503}
        eq(others, set(), "every answer is 202 or 503")
        check_promises(e, load)
        contains(e.log(), "commits work again")
        # nothing acknowledged is lost after a crash and a restart
        e.kill()
        e.start()
        st = check_promises(e, load)
        eq(len(st), len(load.keys(202)), "exactly the acknowledged requests are stored")


@test
def kill_while_fsync_fails_keeps_promises():
    """kill -9 while commits fail: the refused requests must not come back
    from the WAL when the store is opened again (a failed fsync leaves the
    frames in the page cache)."""
    e = Engine({"ff.lua": FF_LUA})
    fault = StoreFault(e)
    with e:
        e.start()
        load = Load(e.hook_url("ff", "in"), threads=6).start()
        wait_until(lambda: load.count(202) >= 50, msg="first acknowledgements")
        fault.set("eio")
        t_fault = time.time()
        wait_until(lambda: load.count(503, since=t_fault) >= 3, timeout=10, msg="503s")
        e.kill()
        load.stop()
        fault.set("ok")
        e.start()
        check_503s(load)
        st = check_promises(e, load)
        eq(len(st), len(load.keys(202)), "exactly the acknowledged requests are stored")


@test
def fsync_eio_503_then_recovers():
    fault_round("eio")


@test
def write_enospc_503_then_recovers():
    fault_round("enospc")


@test
def back_pressure_503_past_max_pending():
    e = Engine({"ff.lua": FF_LUA}, env={"HOOKWORK_MAX_PENDING": "20"})
    fault = StoreFault(e)
    with e:
        e.start()
        url = e.hook_url("ff", "in")
        fault.set("stall")  # commits hang: writes pile up
        time.sleep(0.2)  # the shim reads its control file every 10 ms
        load = Load(url, threads=40).start()
        wait_until(lambda: load.count(503) >= 20, timeout=15, msg="503s past HOOKWORK_MAX_PENDING")
        eq(load.count(202), 0, "nothing acknowledged while nothing commits")
        fault.set("ok")
        t_ok = time.time()
        wait_until(lambda: load.count(202, since=t_ok) >= 40, timeout=15, msg="acknowledged once commits go on")
        load.stop()
        check_503s(load)
        reasons = {r[2]["error"] for r in load.results.values() if r[0] == 503}
        contains(reasons, "store unavailable: too many writes waiting to be committed (20)")
        check_promises(e, load)


@test
def shutdown_deadline_with_commit_in_flight_is_not_503():
    """At the deadline a request whose commit is still in flight is answered
    after the store decides: stored -> 202 (and it runs after the restart)."""
    e = Engine({"ff.lua": FF_LUA}, env={"HOOKWORK_GRACE": "0.3"})
    fault = StoreFault(e)
    with e:
        e.start()
        url = e.hook_url("ff", "in")
        eq(e.post(url, json={"n": 0}).status, 202)
        fault.set("stall")
        box = {}
        th = threading.Thread(target=lambda: box.update(r=e.post(url, json={"n": 1}, timeout=30)))
        th.start()
        time.sleep(0.5)  # the request is written; its commit hangs
        e.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # past the deadline
        fault.set("ok")
        th.join(30)
        r = box.get("r")
        ok(r is not None, "the caller got an answer")
        e.proc.wait(20)
        st = stored_ns(e)
        if r.status == 503:
            ok(1 not in st, "answered 503 but stored", r, st)
        else:
            eq(r.status, 202, "answer at the deadline: %r" % r)
            ok(1 in st, "acknowledged, so stored", st)
            e.start()
            wait_until(lambda: stored_ns(e).get(1) == "completed", msg="runs after restart")


SLOW_SYNC_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "slow",
  steps = {
    hw.webhook { name = "in" },
    hw.request { name = "call", url = %s },
    hw.respond { body = { ok = true } },
  },
}
"""


@test
def shutdown_deadline_sync_caller_of_stored_run_not_503():
    rec = lib_recorder()
    rec.route("GET", "/slow", json={"v": 1}, delay=3)
    with Engine({"slow.lua": SLOW_SYNC_LUA % lua_str(rec.url + "/slow")},
                env={"HOOKWORK_GRACE": "0.5"}) as e:
        e.start()
        url = e.hook_url("slow", "in")
        box = {}
        th = threading.Thread(target=lambda: box.update(r=e.post(url, json={"n": 1}, timeout=30)))
        th.start()
        rec.wait_for("GET", "/slow")
        e.proc.send_signal(signal.SIGTERM)
        th.join(30)
        r = box.get("r")
        ok(r is not None, "the caller got an answer")
        e.proc.wait(20)
        ok(r.status != 503, "a stored request is never answered 503", r)
        eq(r.status, 202, "stored; runs after the restart: %r" % r)
        tx = r.json["transaction"]
        rec.route("GET", "/slow", json={"v": 1})
        e.start()
        eq(e.wait_tx(tx, "completed")["state"], "completed")


def lib_recorder():
    from lib import Recorder
    return Recorder()


PAD = "x" * 2000


@test
def tmpfs_full_503_then_recovers():
    """--data on a small tmpfs that fills up under load (root only; skipped
    with a reason when mount is not permitted)."""
    not_on_postgres("a full disk under --data; PostgreSQL's disk is the database server's "
                    "(failing commits are covered by the StoreFault rounds)")
    mnt = tempfile.mkdtemp(prefix="hookwork-tmpfs-")
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as ex:
        r = None
        why = str(ex)
    if r is None or r.returncode != 0:
        print("  skip tmpfs_full_503_then_recovers: cannot mount a tmpfs (%s)"
              % (why if r is None else r.stdout.strip()), flush=True)
        os.rmdir(mnt)
        return
    try:
        e = Engine({"ff.lua": FF_LUA}, data_dir=os.path.join(mnt, "var"))
        with e:
            e.start()
            url = e.hook_url("ff", "in")
            # leave about 1 MiB free, then let the load fill it
            vfs = os.statvfs(mnt)
            free = vfs.f_bavail * vfs.f_frsize
            filler = os.path.join(mnt, "filler")
            with open(filler, "wb") as f:
                f.write(b"\0" * max(0, free - 1024 * 1024))
            load = Load(url, threads=4)
            load.pad = PAD
            load.start()
            wait_until(lambda: load.count(503) >= 20, timeout=30, msg="503s once the disk is full")
            time.sleep(1)
            os.remove(filler)
            t_ok = time.time()
            wait_until(lambda: load.count(202, since=t_ok + 0.2) >= 50, timeout=20,
                       msg="service resumes once space is freed")
            load.stop()
            check_503s(load)
            others = {r[0] for r in load.results.values()} - {202, 503}
            eq(others, set(), "every answer is 202 or 503")
            check_promises(e, load)
            e.kill()
            e.start()
            st = check_promises(e, load)
            eq(len(st), len(load.keys(202)), "exactly the acknowledged requests are stored")
            e.stop()
    finally:
        subprocess.run(["umount", mnt])
        os.rmdir(mnt)


# ---------------------------------------------------------------- recovery at any size

PARK_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "pk",
  steps = {
    hw.webhook { name = "in", fields = { id = "string" } },
    hw.webhook { name = "st", match = "id" },
    hw.step { name = "s", run = function(tx) tx.data.resumed = true end },
  },
}
"""

REQ = json.dumps({"method": "POST", "path": "/hooks/x", "headers": {}, "query": {},
                  "body": "{}", "ip": "127.0.0.1"})


def make_backlog(data_dir, n_first, n_jobs):
    """n_first transactions still 'running' (a crash mid first run) and
    n_jobs resumes of parked transactions not yet run, written straight into
    the store."""
    con = sqlite3.connect(os.path.join(data_dir, "hookwork.db"))
    now = time.time()
    with con:
        con.executemany(
            "INSERT INTO tx(id, cycle, state, step, data, created, updated, runs, request)"
            " VALUES(?, 'ff', 'running', 'in', ?, ?, ?, 1, ?)",
            ((k, '{"n":%d}' % k, now, now, REQ) for k in range(1, n_first + 1)))
        con.executemany(
            "INSERT INTO tx(id, cycle, state, step, wait_step, match_value, parked_at, data,"
            " snapshot, created, updated, runs) VALUES(?, 'pk', 'waiting', 'st', 'st', ?, ?, ?, ?, ?, ?, 1)",
            ((n_first + k, "m%d" % k, now, '{"id":"m%d"}' % k, '{"id":"m%d"}' % k, now, now)
             for k in range(1, n_jobs + 1)))
        con.executemany(
            "INSERT INTO jobs(id, tx, run, entry, data, request) VALUES(?, ?, 2, 'st', ?, ?)",
            ((k, n_first + k, '{"id":"m%d"}' % k, REQ) for k in range(1, n_jobs + 1)))
    con.close()


def make_backlog_pg(e, node, n_first, n_jobs):
    """make_backlog on PostgreSQL: the same rows, owned by `node` (a node
    recovers the running rows it owns), and the id sequences moved past them
    (each nextval is a block of 100 ids: the next block starts right after)."""
    from lib import pg_server
    from pgserver import literal as q
    now, req, own = repr(time.time()), q(REQ), q(node)
    pg_server().psql(e.store, """BEGIN;
INSERT INTO tx(id, cycle, state, step, data, created, updated, runs, request, owner)
  SELECT k, 'ff', 'running', 'in', '{"n":' || k || '}', %(now)s, %(now)s, 1, %(req)s, %(own)s
  FROM generate_series(1, %(nf)d) k;
INSERT INTO tx(id, cycle, state, step, wait_step, match_value, parked_at, data, snapshot,
               created, updated, runs, owner)
  SELECT %(nf)d + k, 'pk', 'waiting', 'st', 'st', 'm' || k, %(now)s, '{"id":"m' || k || '"}',
         '{"id":"m' || k || '"}', %(now)s, %(now)s, 1, %(own)s
  FROM generate_series(1, %(nj)d) k;
INSERT INTO jobs(id, tx, run, entry, data, request, owner)
  SELECT k, %(nf)d + k, 2, 'st', '{"id":"m' || k || '"}', %(req)s, %(own)s
  FROM generate_series(1, %(nj)d) k;
SELECT setval('hw_ids_tx', %(tx_last)d), setval('hw_ids_job', %(job_last)d);
COMMIT;
""" % {"now": now, "req": req, "own": own, "nf": n_first, "nj": n_jobs,
       "tx_last": n_first + n_jobs + 1 - 100, "job_last": n_jobs + 1 - 100})


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@test
def recovery_of_a_large_backlog_streams():
    sanitized = bool(os.environ.get("HOOKWORK_SANITIZED"))
    pg = on_postgres()
    # PostgreSQL: the backlog of the sanitized build (the rows go through a
    # database on the same two cores; 220,000 runs take minutes there)
    n_first, n_jobs = (20000, 2000) if sanitized or pg else (200000, 20000)
    with Engine({"ff.lua": FF_LUA, "pk.lua": PARK_LUA}, args=["--node", "bk"] if pg else []) as e:
        e.start()
        url = e.hook_url("ff", "in")
        e.stop()
        if pg:
            make_backlog_pg(e, "bk", n_first, n_jobs)
        else:
            make_backlog(e.data_dir, n_first, n_jobs)
        t0 = time.time()
        e.start(wait=False)
        e.wait_healthy(timeout=10)
        ok(time.time() - t0 < 10, "serving within seconds")
        # a new request is taken while the backlog runs
        t1 = time.time()
        r = e.post(url, json={"n": -1}, timeout=10)
        eq(r.status, 202, "new request during recovery: %r" % r)
        ok(time.time() - t1 < 2, "answered promptly during recovery", time.time() - t1)
        eq(r.json["transaction"], str(n_first + n_jobs + 1), "ids go on after the stored ones")

        def left():
            return tuple(e.db_rows("SELECT (SELECT count(*) FROM tx WHERE state = 'running'),"
                                   " (SELECT count(*) FROM jobs)")[0])
        wait_until(lambda: left() == (0, 0), timeout=600 if sanitized else 240, interval=0.5,
                   msg="the backlog worked through")
        done = [tuple(r) for r in e.db_rows("SELECT cycle, state, count(*) FROM tx GROUP BY cycle, state")]
        # a resumed run leaves its transaction waiting for the next match
        eq(sorted(done), [("ff", "completed", n_first + 1), ("pk", "waiting", n_jobs)])
        eq(e.db_rows("SELECT count(*) FROM tx WHERE cycle = 'pk' AND json_extract(data, '$.resumed') = 1",
                     pg="SELECT count(*) FROM tx WHERE cycle = 'pk' AND data::jsonb -> 'resumed' = 'true'"
                     )[0][0], n_jobs, "every resume ran")
        if not sanitized:
            hwm = vm_hwm_kb(e.proc.pid)
            ok(hwm < 400 * 1024, "bounded memory (peak RSS %d MiB)" % (hwm // 1024))
        contains(e.log(), "recovered %d unfinished runs" % (n_first + n_jobs))
