"""Issue 6: connectors, ip_filtered webhooks, allowed_ips changed at run time.

Loopback source addresses 127.0.0.2, 127.0.0.3, ... are all local on Linux:
the client socket is bound to them (Engine.post(source_ip=...)).
"""

import json
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.parse

from lib import (test, Engine, eq, ok, contains, fail, wait_until, lua_str,
                 run_cli, http_request)

TERMINAL = ("completed", "failed", "expired")


# ---------------------------------------------------------------- helpers

def connector_lua(name, ips):
    if ips is None:
        body = ""
    else:
        body = ", allowed_ips = { %s }" % ", ".join(lua_str(i) for i in ips)
    return 'local hw = require "hookwork"\nreturn hw.connector { name = %s%s }\n' % (lua_str(name), body)


def guarded_lua(name="guarded", connector="gate"):
    """A cycle whose trigger is ip_filtered; a step copies tx.request.ip into tx.data."""
    return """local hw = require "hookwork"
return hw.cycle {
  name = %s,
  connector = %s,
  steps = {
    hw.webhook { name = "in", ip_filtered = true },
    hw.step { name = "ip", run = function(tx) tx.data.ip = tx.request.ip end },
  },
}
""" % (lua_str(name), lua_str(connector))


def open_lua(name="open", connector="gate"):
    """Same connector, trigger not filtered."""
    return """local hw = require "hookwork"
return hw.cycle {
  name = %s,
  connector = %s,
  steps = {
    hw.webhook { name = "in" },
    hw.step { name = "ip", run = function(tx) tx.data.ip = tx.request.ip end },
  },
}
""" % (lua_str(name), lua_str(connector))


MID_LUA = """local hw = require "hookwork"
return hw.cycle {
  name = "mid",
  connector = "gate",
  steps = {
    hw.webhook { name = "in", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id", ip_filtered = true },
    hw.step { name = "after", run = function(tx) tx.data.resumed_ip = tx.request.ip end },
  },
}
"""


def post_from(e, cycle, ip, body=None, headers=None, step="in"):
    return e.post(e.hook_url(cycle, step), json=body if body is not None else {"x": 1},
                  headers=headers, source_ip=ip)


def accepted(e, cycle, ip, headers=None, step="in", body=None):
    """Request from ip must be accepted; returns the ended transaction."""
    r = post_from(e, cycle, ip, body=body, headers=headers, step=step)
    eq(r.status, 202, "request to %s/%s from %s (headers %r) must be accepted: %r" % (cycle, step, ip, headers, r))
    tid = (r.json or {}).get("transaction")
    ok(tid, "202 names the transaction", r.json)
    return e.wait_tx(tid, TERMINAL)


def rejected(e, cycle, ip, headers=None, step="in", body=None):
    """Request from ip must be refused with 403 and store nothing."""
    before = len(e.txs(cycle=cycle, limit=1000))
    r = post_from(e, cycle, ip, body=body, headers=headers, step=step)
    eq(r.status, 403, "request to %s/%s from %s (headers %r) must be refused: %r" % (cycle, step, ip, headers, r))
    j = r.json
    ok(isinstance(j, dict) and isinstance(j.get("error"), str), "403 body is {\"error\": ...}", r.body)
    after = len(e.txs(cycle=cycle, limit=1000))
    eq(after, before, "a refused request stores no transaction")
    return r


def find_connector(listing, name):
    if isinstance(listing, dict):
        if isinstance(listing.get(name), dict):
            return listing[name]
        listing = listing.get("connectors", [])
    for c in listing or []:
        if isinstance(c, dict) and c.get("name") == name:
            return c
    return None


def get_connector(e, name):
    r = e.admin("GET", "/api/connectors/%s" % name)
    eq(r.status, 200, "GET /api/connectors/%s: %r" % (name, r))
    ok(isinstance(r.json, dict), "connector is a JSON object", r.body)
    return r.json


def put_ips(e, name, ips):
    return e.admin("PUT", "/api/connectors/%s" % name, json={"allowed_ips": ips})


def wait_accepting(e, cycle, ip, timeout, step="in"):
    """Poll until a request from ip is accepted (a refused one changes nothing)."""
    t0 = time.time()
    last = None
    while True:
        last = post_from(e, cycle, ip, step=step)
        if last.status == 202:
            return time.time() - t0, last
        if time.time() - t0 > timeout:
            fail("request from %s not accepted within %ss of the change; last %r" % (ip, timeout, last))
        time.sleep(0.05)


# ---------------------------------------------------------------- tests

@test
def single_allowed_address():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]),
             "guarded.lua": guarded_lua(), "open.lua": open_lua()}
    with Engine(files) as e:
        e.start()
        t = accepted(e, "guarded", "127.0.0.2")
        eq(t["state"], "completed")
        eq(t["data"].get("ip"), "127.0.0.2", "tx.request.ip is the client address")
        rejected(e, "guarded", "127.0.0.3")
        rejected(e, "guarded", "127.0.0.1")
        eq(len(e.txs(cycle="guarded", limit=1000)), 1, "only the allowed request was stored")
        # the unfiltered webhook of the same connector takes everyone
        t = accepted(e, "open", "127.0.0.3")
        eq(t["data"].get("ip"), "127.0.0.3")
        accepted(e, "open", "127.0.0.1")


@test
def cidr_blocks():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.0/30", "127.0.0.8/29"]),
             "guarded.lua": guarded_lua()}
    with Engine(files) as e:
        e.start()
        for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.8", "127.0.0.15"):
            t = accepted(e, "guarded", ip)
            eq(t["data"].get("ip"), ip)
        for ip in ("127.0.0.4", "127.0.0.7", "127.0.0.16", "127.0.1.2"):
            rejected(e, "guarded", ip)


@test
def mid_cycle_ip_filtered_webhook():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]), "mid.lua": MID_LUA}
    with Engine(files) as e:
        e.start()
        # the trigger is not filtered
        r = post_from(e, "mid", "127.0.0.3", body={"order_id": "A1"})
        eq(r.status, 202, "unfiltered trigger: %r" % r)
        tid = r.json["transaction"]
        e.wait_tx(tid, "waiting")
        r = post_from(e, "mid", "127.0.0.3", body={"order_id": "A1"}, step="status")
        eq(r.status, 403, "filtered mid-cycle webhook from a foreign address: %r" % r)
        time.sleep(0.3)
        t = e.tx(tid)
        eq(t["state"], "waiting")
        ok(not [h for h in t.get("history") or [] if h.get("step") == "after"],
           "the refused request did not resume the transaction", t.get("history"))
        r = post_from(e, "mid", "127.0.0.2", body={"order_id": "A1"}, step="status")
        ok(r.status // 100 == 2, "allowed address resumes: %r" % r)
        t = wait_until(lambda: (lambda x: x if x["data"].get("resumed_ip") else None)(e.tx(tid)),
                       timeout=10, msg="resumed run")
        eq(t["data"]["resumed_ip"], "127.0.0.2")


@test
def empty_or_absent_list_rejects_all():
    files = {"empty.lua": connector_lua("empty", []),
             "absent.lua": connector_lua("absent", None),
             "g1.lua": guarded_lua("g1", "empty"), "g2.lua": guarded_lua("g2", "absent"),
             "o1.lua": open_lua("o1", "empty")}
    with Engine(files) as e:
        e.start()
        for ip in ("127.0.0.1", "127.0.0.2"):
            rejected(e, "g1", ip)
            rejected(e, "g2", ip)
        accepted(e, "o1", "127.0.0.2")


class Engine6(Engine):
    """An engine whose webhook listener is on the IPv6 loopback."""

    def command(self):
        cmd = Engine.command(self)
        i = cmd.index("--listen")
        cmd[i + 1] = "[::1]:%d" % self.port
        return cmd


def have_ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(("::1", 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


@test
def ipv6_loopback_address():
    if not have_ipv6_loopback():
        print("SKIP ipv6_loopback_address: this machine has no IPv6 loopback (::1)")
        return
    files = {"v6.lua": connector_lua("v6", ["::1"]),
             "v6net.lua": connector_lua("v6net", ["::/127"]),
             "v4.lua": connector_lua("v4", ["127.0.0.0/8"]),
             "g6.lua": guarded_lua("g6", "v6"), "g6n.lua": guarded_lua("g6n", "v6net"),
             "g4.lua": guarded_lua("g4", "v4")}
    with Engine6(files) as e:
        e.start()

        def post6(cycle):
            path = urllib.parse.urlsplit(e.hook_url(cycle, "in")).path
            body = json.dumps({"x": 1}).encode()
            return http_request("::1", e.port, "POST", path, body=body,
                                headers={"Content-Type": "application/json"}, source_ip="::1")
        for cycle in ("g6", "g6n"):
            r = post6(cycle)
            eq(r.status, 202, "%s: ::1 is allowed: %r" % (cycle, r))
            t = e.wait_tx(r.json["transaction"], TERMINAL)
            eq(t["data"].get("ip"), "::1", "tx.request.ip of an IPv6 client")
        r = post6("g4")
        eq(r.status, 403, "::1 is not in 127.0.0.0/8: %r" % r)
        eq(len(e.txs(cycle="g4", limit=100)), 0)


@test
def admin_put_applies_next_request_and_survives_restart():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]),
             "guarded.lua": guarded_lua(), "open.lua": open_lua()}
    with Engine(files) as e:
        e.start()
        r = e.admin("GET", "/api/connectors")
        eq(r.status, 200, "GET /api/connectors: %r" % r)
        c = find_connector(r.json, "gate")
        ok(c is not None, "connector gate listed", r.json)
        eq(c.get("allowed_ips"), ["127.0.0.2"], "listed allowed_ips")
        eq(get_connector(e, "gate").get("allowed_ips"), ["127.0.0.2"])
        missing = e.admin("GET", "/api/connectors/nosuch")
        eq(missing.status // 100, 4, "unknown connector: %r" % missing)

        accepted(e, "guarded", "127.0.0.2")
        hook = e.hook_url("guarded", "in")
        r = put_ips(e, "gate", ["127.0.0.3", "127.0.0.64/26"])
        eq(r.status // 100, 2, "PUT /api/connectors/gate: %r" % r)
        # the very next request sees the new list, no cycle restart
        t = accepted(e, "guarded", "127.0.0.3")
        eq(t["data"].get("ip"), "127.0.0.3")
        accepted(e, "guarded", "127.0.0.100")
        rejected(e, "guarded", "127.0.0.2")
        eq(e.cycle("guarded").get("state"), "running")
        eq(get_connector(e, "gate").get("allowed_ips"), ["127.0.0.3", "127.0.0.64/26"])
        accepted(e, "open", "127.0.0.2")

        e.restart()
        eq(e.hook_url("guarded", "in"), hook, "hook URL stable across restart")
        eq(get_connector(e, "gate").get("allowed_ips"), ["127.0.0.3", "127.0.0.64/26"],
           "PUT list kept across restart")
        accepted(e, "guarded", "127.0.0.3")
        rejected(e, "guarded", "127.0.0.2")

        # an empty list via PUT rejects everyone
        r = put_ips(e, "gate", [])
        eq(r.status // 100, 2, "PUT []: %r" % r)
        rejected(e, "guarded", "127.0.0.3")
        rejected(e, "guarded", "127.0.0.2")


@test
def connector_file_edit_applies_within_2s():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]), "guarded.lua": guarded_lua()}
    with Engine(files) as e:
        e.start()
        accepted(e, "guarded", "127.0.0.2")
        rejected(e, "guarded", "127.0.0.3")
        hook = e.hook_url("guarded", "in")
        e.write("gate.lua", connector_lua("gate", ["127.0.0.3"]))
        dt, r = wait_accepting(e, "guarded", "127.0.0.3", timeout=2.0)
        e.wait_tx(r.json["transaction"], TERMINAL)
        rejected(e, "guarded", "127.0.0.2")
        eq(get_connector(e, "gate").get("allowed_ips"), ["127.0.0.3"])
        eq(e.hook_url("guarded", "in"), hook, "same hook URL after the connector reload")
        eq(e.cycle("guarded").get("state"), "running")


@test
def file_save_after_put_wins():
    """SPEC: the latest change wins; a PUT replaces the file's list until the
    connector file itself is saved again."""
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]), "guarded.lua": guarded_lua()}
    with Engine(files) as e:
        e.start()
        r = put_ips(e, "gate", ["127.0.0.3"])
        eq(r.status // 100, 2, "PUT: %r" % r)
        accepted(e, "guarded", "127.0.0.3")
        time.sleep(0.2)
        e.write("gate.lua", connector_lua("gate", ["127.0.0.4"]))
        wait_accepting(e, "guarded", "127.0.0.4", timeout=2.0)
        rejected(e, "guarded", "127.0.0.3")
        rejected(e, "guarded", "127.0.0.2")
        e.restart()
        eq(get_connector(e, "gate").get("allowed_ips"), ["127.0.0.4"],
           "after restart the file (saved after the PUT) still wins")
        accepted(e, "guarded", "127.0.0.4")
        rejected(e, "guarded", "127.0.0.3")
        # and a later PUT wins again
        r = put_ips(e, "gate", ["127.0.0.5"])
        eq(r.status // 100, 2, "PUT: %r" % r)
        accepted(e, "guarded", "127.0.0.5")
        rejected(e, "guarded", "127.0.0.4")


@test
def x_forwarded_for_ignored_from_untrusted_peer():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]), "guarded.lua": guarded_lua(),
             "open.lua": open_lua()}
    with Engine(files) as e:
        e.start()
        rejected(e, "guarded", "127.0.0.3", headers={"X-Forwarded-For": "127.0.0.2"})
        rejected(e, "guarded", "127.0.0.3", headers={"X-Forwarded-For": "127.0.0.9, 127.0.0.2"})
        t = accepted(e, "guarded", "127.0.0.2", headers={"X-Forwarded-For": "127.0.0.3"})
        eq(t["data"].get("ip"), "127.0.0.2", "without --trust-proxy the peer is the client")
        t = accepted(e, "open", "127.0.0.3", headers={"X-Forwarded-For": "127.0.0.2"})
        eq(t["data"].get("ip"), "127.0.0.3", "tx.request.ip ignores a spoofed X-Forwarded-For")


@test
def x_forwarded_for_honoured_from_trusted_proxy():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]), "guarded.lua": guarded_lua(),
             "open.lua": open_lua()}
    with Engine(files, args=["--trust-proxy", "127.0.0.5/32", "--trust-proxy", "127.0.0.6/32"]) as e:
        e.start()
        xff = lambda v: {"X-Forwarded-For": v}  # noqa: E731
        t = accepted(e, "guarded", "127.0.0.5", headers=xff("127.0.0.2"))
        eq(t["data"].get("ip"), "127.0.0.2", "tx.request.ip is the forwarded client")
        # right-most address that is not a trusted proxy
        t = accepted(e, "guarded", "127.0.0.5", headers=xff("127.0.0.3, 127.0.0.2"))
        eq(t["data"].get("ip"), "127.0.0.2")
        t = accepted(e, "guarded", "127.0.0.5", headers=xff("127.0.0.2, 127.0.0.6"))
        eq(t["data"].get("ip"), "127.0.0.2", "a second trusted proxy (repeated --trust-proxy) is skipped")
        rejected(e, "guarded", "127.0.0.5", headers=xff("127.0.0.2, 127.0.0.3"))
        rejected(e, "guarded", "127.0.0.5", headers=xff("127.0.0.3"))
        # the proxy itself, without the header, is the client
        rejected(e, "guarded", "127.0.0.5")
        # an untrusted peer's header is still ignored
        rejected(e, "guarded", "127.0.0.3", headers=xff("127.0.0.2"))
        t = accepted(e, "open", "127.0.0.5", headers=xff("127.0.0.7"))
        eq(t["data"].get("ip"), "127.0.0.7")


@test
def invalid_entries_rejected_by_check():
    d = tempfile.mkdtemp(prefix="hookwork-e2e-ipcheck-")
    try:
        _check_cases(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _check_cases(d):
    cases = {"bad1.lua": "127.0.0.300", "bad2.lua": "10.0.0.0/33", "bad3.lua": "::gg",
             "bad4.lua": "not-an-address", "bad5.lua": "2001:db8::/129"}
    good = os.path.join(d, "good.lua")
    with open(good, "w") as f:
        f.write(connector_lua("good", ["127.0.0.1", "10.1.0.0/16", "::1", "2001:db8::/32", "0.0.0.0/0"]))
    r = run_cli(["check", good])
    eq(r.returncode, 0, "check of a valid connector: stdout %r stderr %r" % (r.stdout, r.stderr))
    for name, entry in cases.items():
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(connector_lua(name[:-4], ["127.0.0.2", entry]))
        r = run_cli(["check", p])
        eq(r.returncode, 1, "check with allowed_ips entry %r must exit 1 (stderr %r)" % (entry, r.stderr))
        contains(r.stderr, entry, "the error names the invalid entry")
        ok(re.search(re.escape(name) + r":\d+: ", r.stderr), "error as FILE:LINE: message", r.stderr)


@test
def invalid_entry_in_edited_file_keeps_old_list():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]), "guarded.lua": guarded_lua()}
    with Engine(files) as e:
        e.start()
        accepted(e, "guarded", "127.0.0.2")
        e.write("gate.lua", connector_lua("gate", ["127.0.0.3", "127.0.0.999"]))

        def error_shown():
            return "127.0.0.999" in json.dumps(e.cycles()) or "127.0.0.999" in e.log()
        wait_until(error_shown, timeout=3, msg="the invalid entry named in /api/cycles or the log")
        # the previous version stays in force
        accepted(e, "guarded", "127.0.0.2")
        rejected(e, "guarded", "127.0.0.3")
        eq(get_connector(e, "gate").get("allowed_ips"), ["127.0.0.2"])


@test
def invalid_entry_via_put_is_400_and_changes_nothing():
    files = {"gate.lua": connector_lua("gate", ["127.0.0.2"]), "guarded.lua": guarded_lua()}
    with Engine(files) as e:
        e.start()
        for bad in ("999.1.1.1", "127.0.0.0/40", "fe80::zz", ""):
            r = put_ips(e, "gate", ["127.0.0.3", bad])
            eq(r.status, 400, "PUT with invalid entry %r: %r" % (bad, r))
            j = r.json
            ok(isinstance(j, dict) and isinstance(j.get("error"), str), "400 body is {\"error\": ...}", r.body)
            if bad:
                contains(j["error"], bad, "the error names the entry")
        eq(get_connector(e, "gate").get("allowed_ips"), ["127.0.0.2"], "nothing changed")
        accepted(e, "guarded", "127.0.0.2")
        rejected(e, "guarded", "127.0.0.3")
        e.restart()
        eq(get_connector(e, "gate").get("allowed_ips"), ["127.0.0.2"], "nothing persisted")
        rejected(e, "guarded", "127.0.0.3")
