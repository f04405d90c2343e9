"""The PostgreSQL backend (--store postgres://...): acknowledgements only after
the commit, a server crash under load (503 store unavailable meanwhile,
nothing acknowledged lost, recovery by itself), hookwork migrate and schema
versions, bad URLs, ids unique across two engines on one database, and
unfinished runs recovered after a kill -9 of the engine.

Black-box: real HTTP to the engine, a real PostgreSQL (tests/e2e/pgserver.py);
the database is read directly to check what was stored. Skipped, with the
reason printed, only when PostgreSQL's binaries are absent."""
import json
import re
import os
import signal
import threading
import time

from lib import (Engine, Recorder, accepted, contains, cycle, eq, lua_str, ok,
                 pg_database, pg_server, run_cli, skip, test, wait_until)

FF = cycle("ff", """
    hw.webhook { name = "in" },
    hw.step { name = "work", run = function(tx) tx.data.done = true end },
""")


def hook(e, cyc="ff", step="in"):
    """The webhook URL, read from the store (the hooks table)."""
    rows = wait_until(lambda: e.db_rows("SELECT token FROM hooks WHERE cycle = ? AND step = ?",
                                        (cyc, step)), timeout=10, msg="webhook token stored")
    return "%s/hooks/%s" % (e.base_url, rows[0][0])


def states(e, ids):
    rows = e.db_rows("SELECT id, state FROM tx WHERE id IN (%s)" % ",".join(str(int(i)) for i in ids)) \
        if ids else []
    return {str(r[0]): r[1] for r in rows}


def own_server():
    """A PostgreSQL of this test alone (it gets crashed and restarted)."""
    pg_server()  # skips with the reason when no server can run here
    import pgserver
    return pgserver.PgServer().start()


def crash(srv):
    """pg_ctl stop -m immediate: the server dies without a shutdown checkpoint,
    as a crash would (it recovers from its WAL at the next start)."""
    srv._run_as([srv._bin("pg_ctl"), "-D", srv.data_dir, "stop", "-m", "immediate", "-w"])
    srv.proc.wait(10)
    srv.proc = None


def restart(srv):
    srv._spawn(60)


@test
def accepts_commit_then_answer_and_owner_is_the_node():
    url = pg_database()
    with Engine({"ff.lua": FF}, store=url, args=["--node", "node-a"]) as e:
        e.start()
        ids = [accepted(e.post(hook(e), json={"n": i})) for i in range(20)]
        # a 202 is sent after the commit: the row is there the moment we read
        rows = e.db_rows("SELECT count(*) FROM tx WHERE id IN (%s)" % ",".join(ids))
        eq(rows[0][0], 20, "every acknowledged transaction is in PostgreSQL")
        wait_until(lambda: set(states(e, ids).values()) == {"completed"}, timeout=10,
                   msg="all completed")
        eq(e.db_rows("SELECT DISTINCT owner FROM tx"), [("node-a",)], "owner is --node")
        eq(e.db_rows("SELECT version FROM schema_version"), [(1,)])
        eq(os.path.exists(e.data_dir), False, "--data is not used with --store")


@test
def server_crash_under_load_refuses_then_recovers_and_loses_nothing():
    srv = own_server()
    try:
        url = srv.new_database()
        with Engine({"ff.lua": FF}, store=url) as e:
            e.start()
            target = hook(e)
            acked, refused, other = [], [], []
            acked_keys, refused_keys, unknown_keys = set(), set(), set()
            lock = threading.Lock()
            stop = threading.Event()

            def load(t):
                n = 0
                while not stop.is_set():
                    n += 1
                    key = "%d-%d" % (t, n)
                    try:
                        r = e.post(target, json={"key": key}, timeout=15)
                    except Exception as ex:  # a connection error is not an ack
                        with lock:
                            other.append(repr(ex))
                            unknown_keys.add(key)
                        time.sleep(0.05)
                        continue
                    with lock:
                        if r.status == 202:
                            acked.append(r.json["transaction"])
                            acked_keys.add(key)
                        elif r.status == 503:
                            refused.append((r.text, r.headers.get("retry-after")))
                            refused_keys.add(key)
                        else:
                            other.append((r.status, r.text))
                            unknown_keys.add(key)
                    if r.status != 202:
                        time.sleep(0.02)

            threads = [threading.Thread(target=load, args=(t,)) for t in range(4)]
            for t in threads:
                t.start()
            try:
                wait_until(lambda: len(acked) >= 50, timeout=20, msg="load running")
                crash(srv)
                with lock:
                    before = len(acked)
                # new requests are refused at once; those whose commit was in
                # flight wait (at most 5 s) for the server to say if it committed
                r = e.post(target, json={"key": "probe"}, timeout=15)
                eq(r.status, 503, "a request while the server is down: " + r.text)
                refused_keys.add("probe")
                with lock:
                    refused.append((r.text, r.headers.get("retry-after")))
                time.sleep(1.0)
                restart(srv)
                with lock:
                    at_restart = len(acked)
                wait_until(lambda: len(acked) >= at_restart + 50, timeout=30,
                           msg="the engine accepts again by itself after the server is back")
            finally:
                stop.set()
                for t in threads:
                    t.join(20)
            ok(e.running(), "the engine kept running")
            eq(other, [], "only 202 and 503 answers")
            for text, retry in refused[:20]:
                contains(text, "store unavailable")
                eq(retry, "1", "Retry-After of a 503")
            ok(before >= 50 and len(acked) > at_restart, "acknowledged before and after", before,
               at_restart, len(acked))
            eq(len(set(acked)), len(acked), "transaction ids are unique")
            # nothing acknowledged is lost, and every one of them runs
            wait_until(lambda: set(states(e, acked).values()) == {"completed"}
                       and len(states(e, acked)) == len(acked), timeout=30,
                       msg="every acknowledged request stored and completed")
            # and a request answered 503 was not stored (a commit whose answer
            # the crash cut off is settled by reading its token back)
            stored = [json.loads(d)["key"] for (d,) in e.db_rows("SELECT data FROM tx")]
            eq(len(stored), len(set(stored)), "each request stored once")
            eq(sorted(set(stored) & refused_keys), [], "no request answered 503 is stored")
            eq(sorted(acked_keys - set(stored)), [], "no acknowledged request is missing")
    finally:
        srv.stop()


@test
def migrate_creates_then_has_nothing_to_do():
    url = pg_database()
    r = run_cli(["migrate", "--store", url])
    eq(r.returncode, 0, r.stderr)
    contains(r.stdout, "created schema version 1")
    r = run_cli(["migrate", "--store", url])
    eq(r.returncode, 0, r.stderr)
    contains(r.stdout, "schema version 1 is current: nothing to do")
    r = run_cli(["migrate"], env={"HOOKWORK_STORE": url})
    eq(r.returncode, 0, "HOOKWORK_STORE names the database: " + r.stderr)
    r = run_cli(["migrate"], env={"HOOKWORK_STORE": ""})
    eq(r.returncode, 2)
    contains(r.stderr, "--store")
    with Engine({"ff.lua": FF}, store=url) as e:
        e.start()
        accepted(e.post(hook(e), json={}))


@test
def schema_newer_or_older_than_the_engine_is_refused():
    url = pg_database()
    srv = pg_server()
    eq(run_cli(["migrate", "--store", url]).returncode, 0)
    e = Engine({"ff.lua": FF}, store=url)
    try:
        srv.psql(url, "UPDATE schema_version SET version = 99")
        e.start(wait=False)
        eq(e.proc.wait(15), 1, "a newer schema: exit 1")
        contains(e.log(), "schema version 99 is newer than this engine's 1")
        r = run_cli(["migrate", "--store", url])
        eq(r.returncode, 1, "migrate never downgrades")
        contains(r.stderr, "schema version 99 is newer than this engine's 1")
        eq(srv.query(url, "SELECT version FROM schema_version"), [(99,)])

        srv.psql(url, "UPDATE schema_version SET version = 0")
        e.start(wait=False)
        eq(e.proc.wait(15), 1, "an older schema: exit 1")
        contains(e.log(), "schema version 0 is older than this engine's 1: run `hookwork migrate`")
        eq(srv.query(url, "SELECT version FROM schema_version"), [(0,)], "run did not migrate")
        r = run_cli(["migrate", "--store", url])
        eq(r.returncode, 0, r.stderr)
        contains(r.stdout, "upgraded schema version 0 to 1")
        e.start()
        accepted(e.post(hook(e), json={}))
    finally:
        e.close()


@test
def bad_store_url_exits_1_with_libpq_message_and_writes_nothing():
    srv = pg_server()
    e = Engine({"ff.lua": FF})
    try:
        cases = [
            ("postgres://postgres@127.0.0.1:1/x", 1, "127.0.0.1"),  # nothing listens
            (srv.url("no_such_db"), 1, 'database "no_such_db" does not exist'),
            ("postgres://postgres@127.0.0.1:%d/x?bogus=1" % srv.port, 1, "bogus"),
            ("mysql://root@127.0.0.1/x", 2, "expected postgres://"),
            # a password is never shown
            ("postgres://postgres:s3cret@127.0.0.1:1/x", 1, "postgres://postgres:***@127.0.0.1:1/x"),
            ("mysql://root:s3cret@127.0.0.1/x", 2, "mysql://root:***@127.0.0.1/x"),
            ("postgres://postgres@127.0.0.1:1/x?password=s3cret&sslmode=disable", 1,
             "password=***&sslmode"),
        ]
        for url, code, msg in cases:
            e.store = url
            e.start(wait=False)
            eq(e.proc.wait(20), code, url)
            shown = e.log().split("--- e2e: start")[-1].split("\n", 1)[1]
            contains(shown, msg)
            ok("s3cret" not in shown, "the password is not shown", shown)
            eq(os.path.exists(e.data_dir), False, "nothing written for " + url)
        r = run_cli(["migrate", "--store", "postgres://postgres@127.0.0.1:1/x"])
        eq(r.returncode, 1)
        contains(r.stderr, "hookwork migrate: ")
        r = run_cli(["run", "--store", srv.url(), "--lease", "0"])
        eq(r.returncode, 2)
        contains(r.stderr, "--lease: expected 1 to 3600 seconds, got '0'")
    finally:
        e.store = None
        e.close()


@test
def ids_are_unique_across_two_engines_on_one_database():
    url = pg_database()
    with Engine({"ff.lua": FF}, store=url, args=["--node", "a"]) as a, \
            Engine({"ff.lua": FF}, store=url, args=["--node", "b"]) as b:
        a.start()
        b.start()
        ha, hb = hook(a), hook(b)
        ids = {"a": [], "b": []}
        # past one block of 100 ids per node
        for i in range(130):
            ids["a"].append(accepted(a.post(ha, json={"i": i})))
            ids["b"].append(accepted(b.post(hb, json={"i": i})))
        every = ids["a"] + ids["b"]
        eq(len(set(every)), len(every), "no id handed out twice")
        for node in ("a", "b"):
            nums = [int(x) for x in ids[node]]
            eq(nums, sorted(nums), "ids increase on node " + node)
        rows = a.db_rows("SELECT owner, count(*) FROM tx GROUP BY owner ORDER BY owner")
        eq(rows, [("a", 130), ("b", 130)])
        wait_until(lambda: a.db_rows("SELECT count(*) FROM hist")[0][0] == 260, timeout=20,
                   msg="history rows of both nodes")
        eq(a.db_rows("SELECT count(DISTINCT (tx, seq)) FROM hist")[0][0], 260)


@test
def engine_kill9_then_restart_recovers_unfinished_runs_from_postgres():
    rec = Recorder()
    src = cycle("chain", """
    hw.webhook { name = "in" },
    hw.step { name = "b", run = function(tx)
      local t0 = os.time()
      while os.time() - t0 < 2 do end
      tx.data.b = true
    end },
    hw.request { name = "c", method = "POST", url = %s .. "/c", json = { step = "c" } },
""" % lua_str(rec.url))
    url = pg_database()
    with rec, Engine({"chain.lua": src}, store=url,
                     env={"HOOKWORK_STEP_BUDGET": "100000000000"}) as e:
        e.start()
        tid = accepted(e.post(hook(e, "chain"), json={"k": 1}))
        time.sleep(0.5)  # inside step b, which keeps the loop busy
        e.kill()
        eq(states(e, [tid]), {tid: "running"}, "unfinished in PostgreSQL")
        eq(len(rec.find("POST", "/c")), 0, "c had not run before the kill")
        e.start()
        wait_until(lambda: states(e, [tid]) == {tid: "completed"}, timeout=20,
                   msg="the run recovered after restart")
        eq(len(rec.find("POST", "/c")), 1, "c runs once after the restart")
        data = e.db_rows("SELECT data FROM tx WHERE id = ?", (int(tid),))[0][0]
        contains(data, '"b":true')


@test
def sigterm_with_the_server_down_exits_and_the_engine_starts_again():
    srv = own_server()
    try:
        url = srv.new_database()
        with Engine({"ff.lua": FF}, store=url) as e:
            e.start()
            target = hook(e)
            accepted(e.post(target, json={}))
            crash(srv)
            r = e.post(target, json={}, timeout=20)
            eq(r.status, 503, r.text)
            contains(r.text, "store unavailable")
            code = e.stop(signal.SIGTERM, timeout=30)
            eq(code, 0, "a clean stop even without the server")
            restart(srv)
            e.start()
            accepted(e.post(target, json={}))
    finally:
        srv.stop()


@test
def a_write_failing_on_its_own_data_is_dropped_and_the_rest_commits():
    """A statement PostgreSQL refuses for its data (a constraint: it can never
    succeed) is logged and dropped; the other writes of its batch are
    committed at once; a request whose own write is refused gets 503 and
    the store does not report itself failing."""
    url = pg_database()
    srv = pg_server()
    with Engine({"ff.lua": FF}, store=url) as e:
        e.start()
        target = hook(e)
        accepted(e.post(target, json={"k": 0}))
        # the run's history can no longer be stored; its outcome can
        srv.psql(url, "ALTER TABLE hist ADD CONSTRAINT no_hist CHECK (tx < 0) NOT VALID")
        tid = accepted(e.post(target, json={"k": 1}))
        wait_until(lambda: states(e, [tid]) == {tid: "completed"}, timeout=10,
                   msg="the outcome committed without its history")
        eq(e.db_rows("SELECT count(*) FROM hist WHERE tx = ?", (int(tid),)), [(0,)])
        wait_until(lambda: "no_hist" in e.log(), timeout=5, msg="the dropped write logged")
        # a request whose own write is refused: 503 naming why, nothing stored
        srv.psql(url, "ALTER TABLE tx ADD CONSTRAINT no_k2 CHECK (data NOT LIKE '%\"k\":2%')")
        r = e.post(target, json={"k": 2})
        eq(r.status, 503, r.text)
        contains(r.text, "store unavailable: ")
        contains(r.text, "no_k2")
        eq(e.db_rows("SELECT count(*) FROM tx WHERE data LIKE '%\"k\":2%'"), [(0,)])
        # the store itself works: the next request is acknowledged at once
        srv.psql(url, "ALTER TABLE hist DROP CONSTRAINT no_hist")
        tid = accepted(e.post(target, json={"k": 3}))
        wait_until(lambda: states(e, [tid]) == {tid: "completed"}, timeout=10, msg="k3 completed")
        wait_until(lambda: e.db_rows("SELECT count(*) FROM hist WHERE tx = ?", (int(tid),))[0][0] == 1,
                   timeout=10, msg="history stored again")


@test
def connections_closed_by_the_server_while_idle_are_reopened_without_503():
    """The server ends the engine's connections (a restart of a pooler, an idle
    timeout, pg_terminate_backend): the engine reconnects at once and the
    next requests are acknowledged, not refused."""
    url = pg_database()
    srv = pg_server()
    with Engine({"ff.lua": FF}, store=url) as e:
        e.start()
        target = hook(e)
        ids = [accepted(e.post(target, json={"k": 0}))]
        for round in range(3):
            # idle: every run ended and its writes committed
            wait_until(lambda: set(states(e, ids).values()) == {"completed"}, timeout=10,
                       msg="runs completed")
            time.sleep(0.3)
            db = url.rsplit("/", 1)[-1]
            pids = [p for (p,) in srv.query(srv.url(), "SELECT pid FROM pg_stat_activity"
                                           " WHERE datname = ? AND application_name = 'hookwork'",
                                           (db,))]
            ok(pids, "the engine's connections")
            srv.query(srv.url(), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                      " WHERE pid IN (%s)" % ",".join(str(p) for p in pids))
            # gone (a request sent before the server ends a connection fails
            # with it: that one is a true 503), and the engine noticed
            wait_until(lambda: not srv.query(srv.url(), "SELECT pid FROM pg_stat_activity"
                                             " WHERE pid IN (%s)" % ",".join(str(p) for p in pids)),
                       timeout=10, msg="the connections ended")
            time.sleep(0.3)
            for k in range(5):
                r = e.post(target, json={"k": k})
                eq(r.status, 202, "round %d request %d: %s" % (round, k, r.text))
                ids.append(r.json["transaction"])
        contains(e.log(), "reconnecting")


class Proxy:
    """A TCP relay between the engine and PostgreSQL that can turn into a
    black hole: it cuts the connections and then accepts new ones without
    ever answering (a server that hangs, a network that drops packets)."""

    def __init__(self, port):
        import socket
        self.upstream = port
        self.mode = "forward"
        self.conns = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        import socket
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
                if self.mode != "forward":
                    continue  # held open, never answered
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns.append(u)
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    def set(self, mode):
        with self.lock:
            self.mode = mode
            conns, self.conns = self.conns, []
        import socket
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.ls.close()
        self.set("forward")


@test
def a_server_that_stops_answering_gets_503_in_bounded_time_then_recovers():
    """Connections cut, then a server that accepts but never answers (libpq
    leaves the connect timeout to the caller in non-blocking mode): requests
    are refused within seconds instead of hanging, and the engine recovers
    by itself when the server answers again."""
    url = pg_database()
    srv = pg_server()
    proxy = Proxy(srv.port)
    db = url.rsplit("/", 1)[-1]
    try:
        with Engine({"ff.lua": FF}, store="postgres://postgres@127.0.0.1:%d/%s" % (proxy.port, db)) as e:
            e.start()
            target = hook(e)
            accepted(e.post(target, json={"k": 0}))
            proxy.set("blackhole")
            t0 = time.time()
            answers = []
            while time.time() - t0 < 12:
                r = e.post(target, json={"k": 1}, timeout=20)
                answers.append((round(time.time() - t0, 1), r.status))
                if r.status == 503 and "store unavailable" in r.text:
                    break
            eq(answers[-1][1], 503, "refused while the server does not answer: %r" % answers)
            ok(answers[-1][0] < 12, "within seconds", answers)
            proxy.set("forward")
            wait_until(lambda: e.post(target, json={"k": 2}).status == 202, timeout=20,
                       msg="acknowledged again once the server answers")
    finally:
        proxy.close()


@test
def checkpoint_commits_while_a_long_step_holds_the_loop():
    """A finished outbound call's checkpoint is sealed while the batch before
    it is still committing (slow commits make that certain); the step after
    it holds the loop for 4 s.  The batch machine runs on the loop, so the
    checkpoint must still go out and commit during the step: a kill -9 in
    the middle of it does not send the finished call again."""
    import storefault
    rec = Recorder()
    src = cycle("chain", """
    hw.webhook { name = "in" },
    hw.request { name = "a", method = "POST", url = %s .. "/a", json = { step = "a" } },
    hw.step { name = "b", run = function(tx)
      local t0 = os.time()
      while os.time() - t0 < 4 do end
      tx.data.b = true
    end },
    hw.request { name = "c", method = "POST", url = %s .. "/c", json = { step = "c" } },
""" % (lua_str(rec.url), lua_str(rec.url)))
    # a is answered after 0.1 s: the run's writes before it are in flight
    rec.route("POST", "/a", json={"ok": True}, delay=0.1)
    url = pg_database()
    env = {"HOOKWORK_STEP_BUDGET": "100000000000"}
    with rec, Engine({"chain.lua": src}, store=url, env=env) as e:
        fault = storefault.StoreFault(e)
        e.start()
        target = hook(e, "chain", "in")
        fault.set("slow:250")  # every commit now takes 0.25 s
        txid = accepted(e.post(target, json={"k": 1}))
        rec.wait_for("POST", "/a", count=1, timeout=10)
        time.sleep(1.5)  # in step b: the checkpoint needs about 0.5 s
        e.kill()
        fault.set("ok")
        eq(len(rec.find("POST", "/c")), 0, "c had not run before the kill")
        e.start()
        t = e.wait_tx(txid, "completed", timeout=20)
        eq(t["data"].get("b"), True)
        eq(len(rec.find("POST", "/a")), 1, "the finished call a is not repeated")
        eq(len(rec.find("POST", "/c")), 1, "c runs once after the restart")


@test
def match_lookup_reads_one_row_on_a_freshly_filled_table():
    """With 20,000 orders parked on a new database (autovacuum has not analyzed
    tx yet: switched off for the table here), the lookup of a resume (find_waiting_desc) must use an index
    that finds its one row, not read every waiting row of the cycle (it
    did: 5 ms per resume with 20,000 parked, on the loop thread)."""
    # the benchmark's cycle (docs/BENCHMARKS.md, resumes with 20,000 parked)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", "cycles",
                           "bench_park.lua")) as f:
        src = f.read()
    url = pg_database()
    with Engine({"bench_park.lua": src}, store=url) as e:
        e.start()
        u1, u2 = hook(e, "bench_park", "new order"), hook(e, "bench_park", "status")
        # autovacuum's next visit is up to a minute away; here it never comes
        pg_server().psql(url, "ALTER TABLE tx SET (autovacuum_enabled = false)")
        n = 20000

        def park(lo, hi):
            for i in range(lo, hi):
                accepted(e.post(u1, json={"order_id": "o%d" % i, "amount": i}))
        threads = [threading.Thread(target=park, args=(k * n // 8, (k + 1) * n // 8)) for k in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        wait_until(lambda: e.db_rows("SELECT count(*) FROM tx WHERE state = 'waiting'")[0][0] == n,
                   timeout=30, msg="all parked")
        tid = e.db_rows("SELECT id FROM tx WHERE match_value = 'o77'")[0][0]
        eq(accepted(e.post(u2, json={"order_id": "o77", "status": "paid"})), str(tid), "the resume found its order")
        plan = pg_server().psql(url, "EXPLAIN (ANALYZE) SELECT id, snapshot, runs, parked_at FROM tx"
                                " WHERE cycle = 'bench_park' AND wait_step = 'status' AND match_value = 'o78'"
                                " AND state = 'waiting' AND (expires_at IS NULL OR expires_at > 1)"
                                " ORDER BY parked_at DESC, id DESC LIMIT 1")
        removed = [int(x) for x in re.findall(r"Rows Removed by Filter: (\d+)", plan)]
        ok(sum(removed) < 10, "the lookup reads its row through an index, not every waiting row:\n" + plan)
