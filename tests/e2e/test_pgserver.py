"""The test PostgreSQL helper (pgserver.py): it starts, hands out fresh
databases, reads rows with their types, runs as an unprivileged user, and
leaves nothing behind when stopped, signalled or killed."""

SAME_ON_EVERY_STORE = "the test PostgreSQL helper itself"  # run.py skips it under HOOKWORK_TEST_STORE=postgres

import os
import signal
import socket
import subprocess
import sys
import time

import pgserver
from lib import HERE, Engine, contains, eq, ok, skip, test, wait_until

CHILD = r"""
import sys, time
sys.path.insert(0, %r)
import pgserver
pgserver.install_signal_handlers()
s = pgserver.PgServer(tmpdir=%r).start()
print(s.dir, s.proc.pid, s.port, flush=True)
time.sleep(120)
"""


def need_pg():
    why = pgserver.available()
    if why:
        skip(why)


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@test
def server_gives_fresh_databases_and_typed_rows():
    need_pg()
    s = pgserver.PgServer().start()
    try:
        d, port = s.dir, s.port
        ok(os.path.isdir(d) and port_open(port), "server up", d, port)
        if os.geteuid() == 0:
            ne_root = os.stat(s.data_dir).st_uid
            ok(ne_root != 0, "data directory owned by an unprivileged user, not root", ne_root)
        a, b = s.new_database(), s.new_database()
        ok(a != b and a.startswith("postgres://postgres@127.0.0.1:%d/hw_" % port), "two URLs", a, b)
        eq(s.query(a, "SELECT current_setting('fsync')"), [("on",)], "fsync")
        s.psql(a, "CREATE TABLE t (a int, b text, j jsonb)")
        s.psql(a, "INSERT INTO t VALUES (1, 'x', '{\"k\": [1, 2]}'), (2, NULL, NULL)")
        eq(s.query(a, "SELECT a, b, j FROM t ORDER BY a"), [(1, "x", {"k": [1, 2]}), (2, None, None)])
        eq(s.query(a, "SELECT b FROM t WHERE b = ? OR a = ?", ("it's ?", 2)), [(None,)])
        eq(s.query(a, "SELECT a FROM t WHERE a > 5"), [])
        eq(s.query(b, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"), [(0,)],
           "the second database is fresh")
        s.drop_database(a)
        eq(s.query(b, "SELECT count(*) FROM pg_database WHERE datname = ?", (a.rsplit("/", 1)[1],)), [(0,)])
    finally:
        s.stop()
    ok(not os.path.exists(d), "directory removed by stop", d)
    ok(not port_open(port), "port closed after stop", port)


@test
def bind_quotes_arguments_and_counts_them():
    eq(pgserver.bind("a = ? AND b = '?' AND c = ?", (1, "o'k")), "a = 1 AND b = '?' AND c = 'o''k'")
    eq(pgserver.bind("x IS ?", (None,)), "x IS NULL")
    for sql, args in (("a = ?", ()), ("a = ?", (1, 2))):
        try:
            pgserver.bind(sql, args)
        except ValueError:
            continue
        raise AssertionError("bind(%r, %r) did not refuse" % (sql, args))


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def child_server(tmp):
    p = subprocess.Popen([sys.executable, "-c", CHILD % (HERE, tmp)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    if len(line) != 3:
        p.kill()
        raise AssertionError("child did not start a server: %r %s" % (line, p.stderr.read()[-2000:]))
    return p, line[0], int(line[1]), int(line[2])


@test
def server_stopped_on_sigterm_and_on_kill_of_its_owner():
    need_pg()
    import tempfile
    tmp = tempfile.mkdtemp(prefix="hookwork-pgtest-")
    os.chmod(tmp, 0o755)
    try:
        # SIGTERM: the handler stops the server and removes its directory.
        p, d, pm, port = child_server(tmp)
        ok(alive(pm) and os.path.isdir(d), "server of the child up")
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        eq(p.returncode, -signal.SIGTERM, "the child still dies of SIGTERM")
        wait_until(lambda: not alive(pm), timeout=15, msg="postmaster gone after SIGTERM")
        ok(not os.path.exists(d), "directory removed on SIGTERM", d)

        # kill -9: the watchdog ends the postmaster and removes the directory.
        p, d, pm, port = child_server(tmp)
        p.kill()
        p.wait(10)
        wait_until(lambda: not alive(pm), timeout=20, msg="postmaster gone after kill -9 of its owner")
        wait_until(lambda: not os.path.exists(d), timeout=10, msg="directory removed after kill -9")
        ok(not port_open(port), "port closed", port)

        # Left behind by a test process that is gone: swept by the next start.
        stale = os.path.join(tmp, pgserver.PREFIX + "%d-abc" % dead_pid())
        os.makedirs(os.path.join(stale, "data"))
        live = os.path.join(tmp, pgserver.PREFIX + "%d-abc" % os.getpid())
        os.makedirs(live)
        eq(pgserver.sweep_stale(tmp), [stale], "swept")
        ok(os.path.isdir(live), "a live process's directory is kept")
    finally:
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


@test
def engine_runs_on_store_url_instead_of_data():
    e = Engine(store="postgres://postgres@127.0.0.1:1/hw_x")
    try:
        cmd = e.command()
        i = cmd.index("--store")
        eq(cmd[i + 1], "postgres://postgres@127.0.0.1:1/hw_x")
        ok("--data" not in cmd, "no --data with a store", cmd)
    finally:
        e.close()
    e = Engine()
    try:
        ok(("--store" in e.command()) is False and "--data" in e.command(), "sqlite until started", e.command())
    finally:
        e.close()


@test
def store_fault_fails_and_stalls_writes_on_postgres():
    need_pg()
    import tempfile
    from storefault import StoreFault
    import lib
    srv = lib.pg_server()
    url = srv.new_database()

    class Fake:  # what StoreFault needs of an Engine
        store = url
        tmp = tempfile.mkdtemp(prefix="hookwork-fault-")
        env_extra = {}
    try:
        srv.psql(url, "CREATE TABLE a (n int); CREATE TABLE b (n int)")
        f = StoreFault(Fake)
        f.set("eio")
        for t in ("a", "b"):
            try:
                srv.psql(url, "INSERT INTO %s VALUES (1)" % t)
            except pgserver.PgError as ex:
                contains(str(ex), "Input/output error")
            else:
                raise AssertionError("a write to %s went through while failing" % t)
        f.set("enospc")
        try:
            srv.psql(url, "DELETE FROM a")
            raise AssertionError("a delete went through while failing")
        except pgserver.PgError as ex:
            contains(str(ex), "No space left on device")
        f.set("ok")
        srv.psql(url, "INSERT INTO a VALUES (1)")
        f.set("stall")
        try:
            srv.psql(url, "SET lock_timeout = '300ms'; INSERT INTO a VALUES (2)")
            raise AssertionError("a write went through while stalled")
        except pgserver.PgError as ex:
            contains(str(ex), "lock timeout")
        eq(srv.query(url, "SELECT n FROM a"), [(1,)], "reads go on while stalled")
        f.set("ok")
        srv.psql(url, "SET lock_timeout = '2s'; INSERT INTO a VALUES (2)")
        eq(srv.query(url, "SELECT count(*) FROM a"), [(2,)])
        # a stall that turns into failures: the writes that waited fail too
        f.set("stall")
        box = {}

        def write():
            try:
                srv.psql(url, "INSERT INTO b VALUES (9)")
                box["r"] = "ok"
            except pgserver.PgError as ex:
                box["r"] = str(ex)
        import threading
        th = threading.Thread(target=write)
        th.start()
        time.sleep(0.3)
        ok("r" not in box, "the write waits while stalled", box)
        f.set("eio")
        th.join(20)
        contains(box.get("r"), "Input/output error", "the write that waited fails")
        f.set("ok")
        f.set("slow:400")
        t0 = time.time()
        srv.psql(url, "BEGIN; INSERT INTO a VALUES (3); INSERT INTO b VALUES (3); UPDATE a SET n = n; COMMIT;")
        took = time.time() - t0
        ok(0.4 <= took < 2.0, "one wait per committing transaction, however many rows", took)
        eq(srv.query(url, "SELECT count(*) FROM a"), [(3,)])
        f.set("ok")
        t0 = time.time()
        srv.psql(url, "INSERT INTO a VALUES (4)")
        ok(time.time() - t0 < 0.4, "fast again")
        f.close()
    finally:
        import shutil
        shutil.rmtree(Fake.tmp, ignore_errors=True)
        srv.drop_database(url)
