"""Issue 10, network edges: HTTP strictness (request smuggling/desync),
X-Forwarded-For, connection and body limits, admin input.

Every test sends traffic to loopback addresses only.
"""

import json
import os
import socket
import time

from lib import (test, Engine, Recorder, eq, ok, contains, wait_until, cycle, not_on_postgres,
                 lua_str, RawConn, raw_request, parse_responses, http_request,
                 run_cli)


FF = cycle("ff", """    hw.webhook { name = "in" },
    hw.step { name = "s", run = function(tx) tx.data.ip = tx.request.ip end },""")


def ff_engine(args=(), env=None, files=None):
    fs = {"ff.lua": FF}
    fs.update(files or {})
    return Engine(fs, args=list(args), env=env)


def answers(port, data, n=2, timeout=3):
    """Raw bytes in, parsed answers out, and whether the engine closed."""
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        resps = c.read_responses(n, timeout=timeout)
        if not c.closed_by_peer:
            c.read_until_closed(timeout=1)
        return parse_responses(c.buf)[0], c.closed_by_peer


# ---------------------------------------------------------------- HTTP strictness

@test
def chunk_data_followed_by_garbage_is_one_400():
    # "abc" then "XX" where CRLF must be: the old parser skipped the two
    # bytes and answered a second, smuggled request too.
    with ff_engine() as e:
        e.start()
        path = e.hook_path("ff", "in")
        data = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n"
                "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode()
        resps, closed = answers(e.port, data)
        eq([r.status for r in resps], [400])
        ok(closed, "connection closed after the 400")


@test
def empty_header_name_is_400():
    with ff_engine() as e:
        e.start()
        path = e.hook_path("ff", "in")
        for hdrs in ("Host: x\r\n: v\r\n", ": v\r\nHost: x\r\n"):
            data = ("POST %s HTTP/1.1\r\n%sContent-Length: 2\r\n\r\n{}" % (path, hdrs)).encode()
            resps, closed = answers(e.port, data, 1)
            eq([r.status for r in resps], [400], repr(hdrs))
            ok(closed)
        eq(e.txs(), [])


@test
def http_2_0_and_0_9_request_lines_are_refused():
    with ff_engine() as e:
        e.start()
        path = e.hook_path("ff", "in")
        for ver in ("HTTP/2.0", "HTTP/0.9"):
            data = ("POST %s %s\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" % (path, ver)).encode()
            resps, closed = answers(e.port, data, 1)
            eq([r.status for r in resps], [505], ver)
        eq(e.txs(), [])


@test
def http11_without_host_or_with_two_is_400():
    with ff_engine() as e:
        e.start()
        path = e.hook_path("ff", "in")
        for hdrs in ("", "Host: a\r\nHost: b\r\n"):
            data = ("POST %s HTTP/1.1\r\n%sContent-Length: 2\r\n\r\n{}" % (path, hdrs)).encode()
            resps, _ = answers(e.port, data, 1)
            eq([r.status for r in resps], [400], repr(hdrs))
        # HTTP/1.0 needs no Host
        data = ("POST %s HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}" % path).encode()
        resps, _ = answers(e.port, data, 1)
        eq([r.status for r in resps], [202])


@test
def absolute_form_target_is_accepted():
    with ff_engine() as e:
        e.start()
        path = e.hook_path("ff", "in")
        data = ("POST http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Length: 2\r\n\r\n{}" % (e.port, path)).encode()
        resps, _ = answers(e.port, data, 1)
        eq([r.status for r in resps], [202])
        data = ("POST HTTPS://example.invalid%s?x=1 HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 2\r\n\r\n{}" % path).encode()
        resps, _ = answers(e.port, data, 1)
        eq([r.status for r in resps], [202])
        # no path at all is "/", which is not a webhook
        data = b"GET http://127.0.0.1?a HTTP/1.1\r\nHost: x\r\n\r\n"
        resps, _ = answers(e.port, data, 1)
        eq([r.status for r in resps], [404])


@test
def desync_framings_get_one_400_each():
    # Each of these could frame differently in a proxy in front: one 400,
    # the connection closed, nothing stored, and the request behind it never
    # answered.
    with ff_engine() as e:
        e.start()
        path = e.hook_path("ff", "in")
        tail = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        cases = {
            "CL.TE": "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
            "TE.CL": "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "double CL": "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
            "same CL twice": "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            "obs-fold": "X-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}",
            "obs-fold on TE": "Transfer-Encoding:\r\n chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "space before colon": "Transfer-Encoding : chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "TE not chunked last": "Transfer-Encoding: chunked, identity\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "TE xchunked": "Transfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            "bare LF in headers": "Content-Length: 2\n\n{}",
            "chunk size overflow": "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\n{}\r\n0\r\n\r\n",
            "chunk size with space": "Transfer-Encoding: chunked\r\n\r\n2 \r\n{}\r\n0\r\n\r\n",
            "CL with sign": "Content-Length: +2\r\n\r\n{}",
            "CL list": "Content-Length: 2, 2\r\n\r\n{}",
            "NUL in value": "X-A: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
        }
        for name, rest in cases.items():
            data = ("POST %s HTTP/1.1\r\nHost: x\r\n%s%s" % (path, rest, tail)).encode()
            resps, closed = answers(e.port, data)
            eq([r.status for r in resps], [400], name)
            ok(closed, "closed after " + name)
        data = ("POST %s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" % path).encode()
        resps, _ = answers(e.port, data, 1)
        eq([r.status for r in resps], [400], "TE in HTTP/1.0")
        eq(e.txs(), [])


@test
def pipelined_requests_still_work_under_strict_parsing():
    with ff_engine() as e:
        e.start()
        path = e.hook_path("ff", "in")
        one = ("POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "2;ext=1\r\n{}\r\n0\r\nX-Trailer: t\r\n\r\n" % path)
        resps, _ = answers(e.port, (one * 3).encode(), 3)
        eq([r.status for r in resps], [202, 202, 202])


# ---------------------------------------------------------------- X-Forwarded-For

GATE = 'local hw = require "hookwork"\nreturn hw.connector { name = "gate", allowed_ips = { "127.0.0.2" } }\n'
GUARDED = cycle("guarded", """    hw.webhook { name = "in", ip_filtered = true },
    hw.step { name = "ip", run = function(tx) tx.data.ip = tx.request.ip end },""",
                extra='\n  connector = "gate",')


def xff_post(e, fields, source="127.0.0.5"):
    """POST with one X-Forwarded-For line per entry of fields, from source."""
    path = e.hook_path("guarded", "in")
    head = "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % path
    head += "".join("X-Forwarded-For: %s\r\n" % f for f in fields)
    data = (head + "Content-Length: 2\r\nConnection: close\r\n\r\n{}").encode()
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", e.port))
    with RawConn.__new__(RawConn) as c:
        c.sock, c.buf, c.closed_by_peer = s, b"", False
        c.send(data)
        c.read_until_closed(timeout=5)
        resps = parse_responses(c.buf)[0]
    ok(len(resps) == 1, "one answer", resps)
    return resps[0]


@test
def xff_every_field_is_read():
    # The client forges a first field; the trusted proxy appends the real
    # address as a second field.  Reading only the first let it through.
    with Engine({"gate.lua": GATE, "guarded.lua": GUARDED},
                args=["--trust-proxy", "127.0.0.5/32"]) as e:
        e.start()
        eq(xff_post(e, ["127.0.0.2", "127.0.0.3"]).status, 403)
        eq(xff_post(e, ["127.0.0.9, 127.0.0.2", "127.0.0.3"]).status, 403)
        r = xff_post(e, ["127.0.0.3", "127.0.0.2"])
        eq(r.status, 202)
        t = e.wait_tx(r.json["transaction"], "completed")
        eq(t["data"]["ip"], "127.0.0.2")


@test
def xff_long_list_is_not_cut():
    # The proxy's entry sits after 2047 bytes: cutting there made the
    # forged 127.0.0.2 the right-most entry.
    with Engine({"gate.lua": GATE, "guarded.lua": GUARDED},
                args=["--trust-proxy", "127.0.0.5/32"]) as e:
        e.start()
        forged = "1.1.1.1, " * 226 + "    127.0.0.2"
        eq(len(forged), 2047)
        eq(xff_post(e, [forged + ", 127.0.0.3"]).status, 403)
        r = xff_post(e, ["127.0.0.3, " * 300 + "127.0.0.2"])
        eq(r.status, 202)
        eq(e.wait_tx(r.json["transaction"], "completed")["data"]["ip"], "127.0.0.2")


@test
def xff_over_8k_or_garbage_is_400():
    with Engine({"gate.lua": GATE, "guarded.lua": GUARDED},
                args=["--trust-proxy", "127.0.0.5/32"]) as e:
        e.start()
        big = ["127.0.0.9, " * 400, "127.0.0.9, " * 400 + "127.0.0.2"]   # 8,809 bytes joined
        r = xff_post(e, big)
        eq(r.status, 400)
        contains(r.json["error"], "X-Forwarded-For")
        contains(r.json["error"], "8192")
        r = xff_post(e, ["127.0.0.2, bogus\"x"])
        eq(r.status, 400)
        contains(r.json["error"], "invalid entry 'bogus\"x'")
        # from an untrusted peer the header is not read at all
        eq(xff_post(e, big, source="127.0.0.2").status, 202)
        eq(len(e.txs()), 1)


# ---------------------------------------------------------------- admin input

@test
def admin_allowed_ips_with_nul_is_400_and_not_stored():
    with Engine({"gate.lua": GATE, "guarded.lua": GUARDED}) as e:
        e.start()
        r = e.admin("PUT", "/api/connectors/gate", json={"allowed_ips": ["127.0.0.3\u0000junk"]})
        eq(r.status, 400)
        contains(r.json["error"], "NUL")
        c = e.admin("GET", "/api/connectors/gate").json
        eq(c["allowed_ips"], ["127.0.0.2"])
        for bad in ({"allowed_ips": {}}, {"allowed_ips": {"a": "127.0.0.3"}}, {"allowed_ips": "127.0.0.3"},
                    {"allowed_ips": [3]}, ["127.0.0.3"]):
            r = e.admin("PUT", "/api/connectors/gate", json=bad)
            eq(r.status, 400, repr(bad))
        eq(e.admin("GET", "/api/connectors/gate").json["allowed_ips"], ["127.0.0.2"])
        r = e.admin("PUT", "/api/connectors/gate", json={"allowed_ips": []})
        eq(r.status, 200)
        eq(e.admin("GET", "/api/connectors/gate").json["allowed_ips"], [])


@test
def admin_bearer_scheme_is_case_insensitive():
    with Engine({"ff.lua": FF}, env={"HOOKWORK_ADMIN_TOKEN": "s3cret"}) as e:
        e.start()
        for auth in ("bearer s3cret", "BEARER s3cret", "Bearer  s3cret"):
            r = e.admin("GET", "/api/cycles", token="", headers={"Authorization": auth})
            eq(r.status, 200, auth)
        for auth in ("bearer s3cre", "Basic s3cret", "bearers3cret", "s3cret"):
            r = e.admin("GET", "/api/cycles", token="", headers={"Authorization": auth})
            eq(r.status, 401, auth)


@test
def admin_off_loopback_without_token_refuses_to_start():
    # Checked without sending anything: the engine must exit before binding.
    for addr in ("0.0.0.0:%d", ":%d", "[::]:%d"):
        e = Engine({"ff.lua": FF})
        e.args = []
        cmd = e.command()
        i = cmd.index("--admin")
        cmd[i + 1] = addr % e.admin_port
        r = run_cli(cmd[1:], timeout=10)
        eq(r.returncode, 1, addr)
        contains(r.stderr, "HOOKWORK_ADMIN_TOKEN")
        contains(r.stderr, "--admin-open")
        e.close()
    # loopback needs nothing, and --admin-open is understood
    with Engine({"ff.lua": FF}, args=["--admin-open"]) as e:
        e.start()
        eq(e.admin("GET", "/api/cycles").status, 200)


@test
def damaged_store_names_sqlite_error():
    not_on_postgres("it damages a page of hookwork.db")
    import sqlite3
    with Engine({"ff.lua": FF}) as e:
        e.start()
        r = e.post(e.hook_path("ff", "in"), json={"a": 1})
        eq(r.status, 202)
        e.wait_tx(r.json["transaction"], "completed")
        eq(e.stop(), 0)
        db = os.path.join(e.data_dir, "hookwork.db")
        c = sqlite3.connect(db)
        c.execute("pragma wal_checkpoint(truncate)")
        page = c.execute("pragma page_size").fetchone()[0]
        root = c.execute("select rootpage from sqlite_master where name='tx'").fetchone()[0]
        c.close()
        with open(db, "r+b") as f:
            f.seek((root - 1) * page)
            f.write(b"\xff" * 64)
        r = run_cli(e.command()[1:], timeout=10)
        eq(r.returncode, 1)
        contains(r.stderr, "malformed")
        ok("attempt to index" not in r.stderr, "no Lua nil error", r.stderr)


# ---------------------------------------------------------------- bounds

def is_closed(c, timeout=3):
    """True when the engine closed c without answering."""
    data, closed = c.read_until_closed(timeout=timeout)
    return closed and data == b""


@test
def max_connections_refuses_new_ones_with_a_log_line():
    with ff_engine(args=["--max-connections", "5"]) as e:
        e.start()
        path = e.hook_path("ff", "in")
        held = [RawConn(e.port) for _ in range(5)]
        time.sleep(0.3)
        extra = RawConn(e.port)
        ok(is_closed(extra), "the 6th connection is closed")
        extra.close()
        wait_until(lambda: "connection limit of 5 reached" in e.log(), timeout=5,
                   msg="a log line")
        # the held ones still work, and a freed slot is usable again
        held[0].send(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}" % path).encode())
        eq([r.status for r in held[0].read_responses(1)], [202])
        for c in held:
            c.close()
        time.sleep(0.3)
        eq(e.post(path, json={}).status, 202)
        eq(e.admin("GET", "/healthz").status, 200)


class LowFdEngine(Engine):
    """An engine started under `ulimit -n N` (soft and hard)."""

    nofile = 200

    def command(self):
        return ["sh", "-c", 'ulimit -n %d && exec "$@"' % self.nofile, "sh"] + super().command()


@test
def at_the_fd_limit_admin_answers_and_it_is_logged():
    e = LowFdEngine({"ff.lua": FF})
    with e:
        e.start()
        path = e.hook_path("ff", "in")
        conns = []
        try:
            for _ in range(220):
                try:
                    conns.append(RawConn(e.port, timeout=2))
                except OSError:
                    break
            time.sleep(0.5)
            eq(e.admin("GET", "/healthz", timeout=5).status, 200)
            eq(e.admin("GET", "/api/cycles", timeout=5).status, 200)
            wait_until(lambda: "connection limit" in e.log(), timeout=5, msg="a log line")
            contains(e.log(), "file descriptor limit 200")
            closed = sum(1 for c in conns[-20:] if is_closed(c, timeout=1))
            ok(closed == 20, "connections past the limit are closed", closed)
        finally:
            for c in conns:
                c.close()
        time.sleep(0.5)
        eq(e.post(path, json={}).status, 202)


@test
def body_bytes_of_all_connections_are_bounded():
    with ff_engine(env={"HOOKWORK_MAX_BODY_BUFFER": "100000"}) as e:
        e.start()
        path = e.hook_path("ff", "in")

        def start(cl, first):
            c = RawConn(e.port)
            c.send(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path, cl)).encode()
                   + b" " * first)
            time.sleep(0.3)
            return c
        a = start(70000, 60000)
        b = start(70000, 30000)
        c = start(20000, 20000)
        resps = c.read_responses(1, timeout=3)
        eq([r.status for r in resps], [503])
        eq(resps[0].headers.get("retry-after"), "1")
        ok(c.read_until_closed(timeout=2)[1], "closed after the 503")
        c.close()
        a.close()                        # its 60000 bytes are given back
        time.sleep(0.3)
        d = start(20000, 19998)
        d.send(b"{}")
        eq([r.status for r in d.read_responses(1)], [202])
        b.send(b" " * 39998 + b"{}")
        eq([r.status for r in b.read_responses(1)], [202])
        for x in (b, d):
            x.close()


@test
def runs_in_flight_are_bounded():
    with Recorder() as rec:
        rec.route("POST", "/slow", delay=1.5)
        slow = cycle("slow", """    hw.webhook { name = "in" },
    hw.step { name = "call", run = function(tx) hw.http.post(%s, { json = {} }) end },"""
                     % lua_str(rec.url + "/slow"))
        with Engine({"slow.lua": slow}, env={"HOOKWORK_MAX_RUNS": "3"}) as e:
            e.start()
            path = e.hook_path("slow", "in")
            ids = [e.post(path, json={}).json["transaction"] for _ in range(3)]
            rec.wait_for("POST", "/slow", 3)
            r = e.post(path, json={})
            eq(r.status, 503)
            eq(r.headers.get("retry-after"), "1")
            contains(r.json["error"], "HOOKWORK_MAX_RUNS")
            for i in ids:
                e.wait_tx(i, "completed")
            eq(e.post(path, json={}).status, 202)


@test
def a_cycle_calling_itself_stays_bounded():
    loop = cycle("loop", """    hw.webhook { name = "in" },
    hw.step { name = "again", run = function(tx)
      local r = hw.http.post(hw.url("loop", "in"), { json = {}, timeout = 20 })
      tx.data.inner = r.status
    end },
    hw.respond { name = "r", body = function(tx) return { inner = tx.data.inner } end },""")
    with Engine({"loop.lua": loop}, env={"HOOKWORK_MAX_RUNS": "20"}) as e:
        e.start()
        r = e.post(e.hook_path("loop", "in"), json={}, timeout=40)
        eq(r.status, 200)
        eq(r.json, {"inner": 200})
        txs = e.txs(limit=1000)
        ok(len(txs) <= 21, "at most 20 runs (and the refused call)", len(txs))
        wait_until(lambda: all(t["state"] == "completed" for t in e.txs(limit=1000)), timeout=10)
        innermost = [t for t in txs if e.tx(t["id"])["data"].get("inner") == 503]
        eq(len(innermost), 1)
        eq(e.admin("GET", "/healthz").status, 200)


# ---------------------------------------------------------------- monotonic waits

def clock_engine(files, args=()):
    """An engine whose wall clock the test can step (tests/e2e/clockshift.c,
    LD_PRELOAD); returns (engine, shift(seconds))."""
    e = Engine(files, args=list(args))
    so = os.path.join(e.tmp, "clockshift.so")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clockshift.c")
    r = __import__("subprocess").run(["cc", "-shared", "-fPIC", "-O2", "-o", so, src, "-ldl"],
                                     capture_output=True, text=True)
    ok(r.returncode == 0, "shim builds", r.stderr)
    ctl = os.path.join(e.tmp, "shift")
    with open(ctl, "w") as f:
        f.write("0")
    e.env_extra.update({"LD_PRELOAD": so, "HW_CLOCK_SHIFT": ctl,
                        "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"})

    def shift(seconds):
        with open(ctl + ".tmp", "w") as f:
            f.write(str(seconds))
        os.rename(ctl + ".tmp", ctl)
    return e, shift


@test
def sync_timeout_ignores_a_wall_clock_step():
    with Recorder() as rec:
        rec.route("GET", "/slow", delay=1.5, json={"v": 7})
        c = cycle("s", """    hw.webhook { name = "in" },
    hw.step { name = "call", run = function(tx) tx.data.v = hw.http.get(%s).json.v end },
    hw.respond { name = "r", body = function(tx) return { v = tx.data.v } end },"""
                  % lua_str(rec.url + "/slow"), extra="\n  sync_timeout = 5,")
        e, shift = clock_engine({"s.lua": c})
        with e:
            e.start()
            path = e.hook_path("s", "in")
            import threading
            t = threading.Timer(0.5, shift, args=(3600,))
            t.start()
            t0 = time.time()
            r = e.post(path, json={}, timeout=15)
            t.join()
            eq(r.status, 200, "answered by the respond step, not a 504")
            eq(r.json, {"v": 7})
            ok(time.time() - t0 >= 1.4, "it did wait for the call")


@test
def expires_ignores_a_wall_clock_step():
    c = cycle("p", """    hw.webhook { name = "in" },
    hw.webhook { name = "status", match = "id", expires = 60 },
    hw.step { name = "done", run = function(tx) tx.data.done = true end },""")
    e, shift = clock_engine({"p.lua": c})
    with e:
        e.start()
        r = e.post(e.hook_path("p", "in"), json={"id": "A1"})
        eq(r.status, 202)
        tid = r.json["transaction"]
        e.wait_tx(tid, "waiting")
        shift(3600)
        time.sleep(1.5)           # several expiry passes
        eq(e.tx(tid)["state"], "waiting")
        r = e.post(e.hook_path("p", "status"), json={"id": "A1"})
        eq(r.status, 202)
        wait_until(lambda: e.tx(tid)["data"].get("done"), timeout=5)
        # a real expiry still happens, on the monotonic clock
        c2 = cycle("q", """    hw.webhook { name = "in" },
    hw.webhook { name = "status", match = "id", expires = 1 },""")
        e.write("q.lua", c2)
        path = e.hook_path("q", "in")
        tid2 = e.post(path, json={"id": "B"}).json["transaction"]
        e.wait_tx(tid2, "expired", timeout=6)
