"""Issue 10, outbound edges: the address policy (checked after DNS and on
every redirect hop), schemes, redirect hops, response size bounds.

The policy is tested with --outbound-deny on loopback addresses only; no
real metadata or LAN address is ever called.
"""

import http.server
import socketserver
import threading

from lib import (test, Engine, Recorder, eq, ok, contains, cycle, lua_str)

TERMINAL = ("completed", "failed", "expired")


def caller(url, opts="", connector=None):
    """A cycle whose step calls url and stores the status (or fails)."""
    extra = '\n  connector = %s,' % lua_str(connector) if connector else ""
    return cycle("out", """    hw.webhook { name = "in" },
    hw.step { name = "call", run = function(tx)
      local r = hw.http.get(%s, { %s })
      tx.data.status = r.status
      tx.data.location = r.headers.location
    end },""" % (lua_str(url), opts), extra=extra)


def run_once(e):
    r = e.post(e.hook_path("out", "in"), json={})
    eq(r.status, 202)
    return e.wait_tx(r.json["transaction"], TERMINAL)


def step_error(t):
    errs = [h.get("error") for h in t["history"] if h.get("status") == "failed"]
    ok(errs, "a failed step", t)
    return errs[-1]


class Server127(object):
    """A minimal HTTP server on 127.0.0.2 that counts what reaches it."""

    def __init__(self):
        self.hits = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.srv = socketserver.TCPServer(("127.0.0.2", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@test
def outbound_deny_is_checked_after_dns():
    with Recorder() as rec:
        for url in ("http://localhost:%d/x" % rec.port, "http://127.0.0.1:%d/y" % rec.port):
            with Engine({"out.lua": caller(url)},
                        args=["--outbound-deny", "127.0.0.0/8", "--outbound-deny", "::1/128"]) as e:
                e.start()
                t = run_once(e)
                eq(t["state"], "failed")
                err = step_error(t)
                contains(err, url)
                contains(err, "refused by the outbound policy")
                contains(err, "--outbound-deny")
        eq(rec.requests, [], "nothing reached the denied address")


@test
def outbound_deny_refuses_a_redirect_hop():
    s2 = Server127()
    try:
        with Recorder() as rec:
            rec.route("GET", "/hop", status=302,
                      headers={"Location": "http://127.0.0.2:%d/inner" % s2.port})
            url = "%s/hop" % rec.url
            with Engine({"out.lua": caller(url, "follow = 1")},
                        args=["--outbound-deny", "127.0.0.2/32"]) as e:
                e.start()
                t = run_once(e)
                eq(t["state"], "failed")
                err = step_error(t)
                contains(err, url)
                contains(err, "address 127.0.0.2 is denied by --outbound-deny 127.0.0.2/32")
            eq(s2.hits, 0)
            # the same hop without the policy reaches the server
            with Engine({"out.lua": caller(url, "follow = 1")}) as e:
                e.start()
                t = run_once(e)
                eq(t["state"], "completed")
                eq(t["data"]["status"], 200)
            eq(s2.hits, 1)
    finally:
        s2.close()


@test
def allow_private_does_not_lift_operator_deny():
    with Recorder() as rec:
        conn = ('local hw = require "hookwork"\n'
                'return hw.connector { name = "lan", allow_private = true }\n')
        with Engine({"lan.lua": conn, "out.lua": caller(rec.url + "/x", connector="lan")},
                    args=["--outbound-deny", "127.0.0.1/32"]) as e:
            e.start()
            eq(e.cycle("out").get("load_error"), None)
            t = run_once(e)
            eq(t["state"], "failed")
            contains(step_error(t), "--outbound-deny 127.0.0.1/32")
        eq(rec.requests, [])
        bad = ('local hw = require "hookwork"\n'
               'return hw.connector { name = "lan", allow_private = "yes" }\n')
        r = Engine({"lan.lua": bad})
        try:
            from lib import run_cli
            res = run_cli(["check", r.cycles_dir + "/lan.lua"])
            eq(res.returncode, 1)
            contains(res.stderr, "allow_private")
        finally:
            r.close()


@test
def redirects_follow_only_the_hops_allowed():
    with Recorder() as rec:
        rec.route("GET", "/a", status=302, headers={"Location": "/b"})
        rec.route("GET", "/b", status=302, headers={"Location": "/c"})
        rec.route("GET", "/c", status=200, json={"done": True})
        for opts, state, status in (("", "completed", 302), ("follow = 1", "failed", None),
                                    ("follow = 2", "completed", 200)):
            with Engine({"out.lua": caller(rec.url + "/a", opts)}) as e:
                e.start()
                t = run_once(e)
                eq(t["state"], state, opts)
                if status:
                    eq(t["data"]["status"], status, opts)
                else:
                    contains(step_error(t), "edirect")
        rec.route("GET", "/ftp", status=302, headers={"Location": "ftp://127.0.0.1/x"})
        with Engine({"out.lua": caller(rec.url + "/ftp", "follow = 3")}) as e:
            e.start()
            t = run_once(e)
            eq(t["state"], "failed")
            contains(step_error(t), "ftp")


@test
def other_schemes_fail_naming_them():
    with Recorder() as rec:
        conn = 'local hw = require "hookwork"\nreturn hw.connector { name = "c", base_url = %s }\n' % lua_str(rec.url)
        for url in ("ftp://127.0.0.1/x", "file:///etc/passwd", "gopher://127.0.0.1/"):
            with Engine({"c.lua": conn, "out.lua": caller(url, connector="c")}) as e:
                e.start()
                t = run_once(e)
                eq(t["state"], "failed", url)
                err = step_error(t)
                contains(err, url)
                contains(err, "scheme '%s' is not allowed" % url.split(":")[0])
        eq(rec.requests, [], "a scheme is never turned into a path on base_url")


@test
def huge_max_response_is_refused():
    with Recorder() as rec:
        rec.route("GET", "/x", body=b"a" * 10)
        with Engine({"out.lua": caller(rec.url + "/x", "max_response = 1 << 40")}) as e:
            e.start()
            t = run_once(e)
            eq(t["state"], "failed")
            err = step_error(t)
            contains(err, "max_response 1099511627776 is over the engine's limit")
            contains(err, "HOOKWORK_MAX_RESPONSE")
        eq(rec.requests, [])


@test
def responses_in_flight_are_bounded_together():
    with Recorder() as rec:
        rec.route("GET", "/big", body=b"a" * 50000)
        with Engine({"out.lua": caller(rec.url + "/big")},
                    env={"HOOKWORK_MAX_RESPONSE_BUFFER": "20000"}) as e:
            e.start()
            t = run_once(e)
            eq(t["state"], "failed")
            contains(step_error(t), "responses being received hold over 20000 bytes")
        with Engine({"out.lua": caller(rec.url + "/big")}) as e:
            e.start()
            eq(run_once(e)["state"], "completed")


@test
def redirect_elsewhere_drops_the_connectors_headers():
    with Recorder() as rec:
        conn = ('local hw = require "hookwork"\nreturn hw.connector { name = "c", base_url = %s,\n'
                '  headers = { ["X-Api-Key"] = "k3y" } }\n' % lua_str(rec.url))
        # same server, another origin (host spelled differently)
        rec.route("GET", "/away", status=302,
                  headers={"Location": "http://localhost:%d/landing" % rec.port})
        rec.route("GET", "/home", status=307, headers={"Location": "/landing2"})
        for path, landing, key in (("/away", "/landing", None), ("/home", "/landing2", "k3y")):
            out = cycle("out", """    hw.webhook { name = "in" },
    hw.step { name = "call", run = function(tx)
      tx.data.status = hw.http.get(%s, { follow = 2, headers = { ["X-Own"] = "mine" } }).status
    end },""" % lua_str(path), extra='\n  connector = "c",')
            with Engine({"c.lua": conn, "out.lua": out}) as e:
                e.start()
                t = run_once(e)
                eq(t["state"], "completed", path)
                eq(t["data"]["status"], 200)
            first = rec.find("GET", path)[-1]
            eq(first.headers.get("x-api-key"), "k3y", "the first hop is on the origin")
            hop = rec.wait_for("GET", landing)[-1]
            eq(hop.headers.get("x-api-key"), key, landing)
            eq(hop.headers.get("x-own"), "mine", "the call's own headers go on")


@test
def post_303_becomes_get_and_307_keeps_the_method():
    with Recorder() as rec:
        rec.route("POST", "/p303", status=303, headers={"Location": "/after303"})
        rec.route("POST", "/p307", status=307, headers={"Location": "/after307"})
        for src, dst, method in (("/p303", "/after303", "GET"), ("/p307", "/after307", "POST")):
            out = cycle("out", """    hw.webhook { name = "in" },
    hw.step { name = "call", run = function(tx)
      tx.data.status = hw.http.post(%s, { follow = 1, json = { a = 1 } }).status
    end },""" % lua_str(rec.url + src))
            with Engine({"out.lua": out}) as e:
                e.start()
                eq(run_once(e)["state"], "completed")
            got = rec.wait_for(method, dst)[-1]
            if method == "POST":
                eq(got.json, {"a": 1})


@test
def a_stalled_transfer_fails_naming_the_url():
    # headers and a first part of the body, then nothing: the call fails
    # after `timeout` seconds of silence, naming the URL
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    held = []

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(65536)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
            held.append(c)
    threading.Thread(target=serve, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/stall" % port
        with Engine({"out.lua": caller(url, "timeout = 1")}) as e:
            e.start()
            import time
            t0 = time.time()
            t = run_once(e)
            eq(t["state"], "failed")
            err = step_error(t)
            contains(err, url)
            ok(time.time() - t0 < 8, "failed within a few seconds")
    finally:
        srv.close()
        for c in held:
            c.close()
