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
                 run_cli, http_request, REPO, hookwork_bin)

FAULT_SO = os.path.join(REPO, "tests", "fault", "faultfs.so")

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
