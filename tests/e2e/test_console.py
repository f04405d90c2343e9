"""The web console's assets over plain HTTP: served by the admin listener at
/ without the admin token (they hold no data), with content types, a strict
Content-Security-Policy, ETag revalidation and no way around the token for
the API.  The browser scenarios are in tests/browser/."""

import re

from lib import Engine, test, eq, ok, contains

CYCLE = """
local hw = require "hookwork"
return hw.cycle { name = "c", steps = { hw.webhook { name = "in" } } }
"""


def get(e, path, headers=None, method="GET"):
    return e.admin(method, path, token="", headers=headers)


def asset_paths(e):
    html = get(e, "/").text
    paths = re.findall(r'(?:src|href)="(/console/[^"]+)"', html)
    ok(paths, "index.html names its assets", html[:300])
    return paths


@test
def console_index_and_assets_are_served_with_types_and_csp():
    with Engine({"c.lua": CYCLE}) as e:
        e.start()
        r = get(e, "/")
        eq(r.status, 200)
        eq(r.headers.get("content-type"), "text/html; charset=utf-8")
        csp = r.headers.get("content-security-policy", "")
        contains(csp, "default-src 'self'")
        contains(csp, "script-src 'self'")
        contains(csp, "frame-ancestors 'none'")
        ok("unsafe-inline" not in csp and "http" not in csp, "CSP allows nothing remote or inline", csp)
        eq(r.headers.get("x-content-type-options"), "nosniff")
        eq(r.headers.get("cache-control"), "no-cache")
        contains(r.text, "<title>hookwork console</title>")
        ok(not re.search(r'(src|href)="(https?:)?//', r.text), "no remote loads in index.html")
        types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                 "svg": "image/svg+xml"}
        seen = set()
        for p in asset_paths(e):
            a = get(e, p)
            eq(a.status, 200, p)
            ext = p.rsplit(".", 1)[1]
            eq(a.headers.get("content-type"), types[ext], p)
            ok(a.headers.get("etag"), "ETag on " + p)
            seen.add(ext)
        eq(seen, {"js", "css", "svg"})
        # JS modules import each other: every import resolves to a served file
        js = get(e, "/console/app.js").text
        for mod in re.findall(r"from '\./([\w.-]+)'", js):
            eq(get(e, "/console/" + mod).status, 200, mod)
            ok(not re.search(r"https?://(?!www\.w3\.org)", get(e, "/console/" + mod).text),
               "no remote URL in " + mod)


@test
def console_etag_revalidates_with_304_and_head_has_no_body():
    with Engine({"c.lua": CYCLE}) as e:
        e.start()
        r = get(e, "/console/app.js")
        tag = r.headers["etag"]
        ok(tag.startswith('"') and tag.endswith('"'), "strong quoted ETag", tag)
        n = get(e, "/console/app.js", headers={"If-None-Match": tag})
        eq(n.status, 304)
        eq(n.body, b"")
        eq(n.headers.get("etag"), tag)
        eq(get(e, "/console/app.js", headers={"If-None-Match": '"other", ' + tag}).status, 304)
        eq(get(e, "/console/app.js", headers={"If-None-Match": '"other"'}).status, 200)
        h = get(e, "/", method="HEAD")
        eq(h.status, 200)
        eq(h.body, b"")
        eq(h.headers.get("content-length"), str(len(get(e, "/").body)))
        eq(get(e, "/index.html").body, get(e, "/").body)


@test
def console_unknown_asset_is_404_and_other_methods_405():
    with Engine({"c.lua": CYCLE}) as e:
        e.start()
        r = get(e, "/console/nope.js")
        eq(r.status, 404)
        eq(r.json, {"error": "not found"})
        eq(get(e, "/console/../api/cycles").status, 404)
        r = get(e, "/", method="POST")
        eq(r.status, 405)
        eq(r.headers.get("allow"), "GET, HEAD")
        eq(get(e, "/console/app.js", method="DELETE").status, 405)


@test
def console_loads_without_the_token_but_the_api_stays_protected():
    with Engine({"c.lua": CYCLE}, env={"HOOKWORK_ADMIN_TOKEN": "s3cret"}) as e:
        e.start()
        eq(get(e, "/").status, 200)
        for p in asset_paths(e):
            eq(get(e, p).status, 200, p)
        for p in ("/api/cycles", "/api/transactions", "/api/connectors", "/metrics", "/api/nope",
                  "/consolex", "/api/../console/app.js"):
            eq(get(e, p).status, 401, p)
        eq(e.admin("GET", "/api/cycles").status, 200)
        # assets carry no data: nothing of the engine's state is in them
        url = e.hook_url("c", "in")
        token = url.rsplit("/", 1)[1]
        for p in ["/"] + asset_paths(e):
            ok(token not in get(e, p).text, "webhook token leaked into " + p)


@test
def request_step_history_names_the_outbound_call():
    """The console's timeline shows outbound calls: a request step's history
    entry notes METHOD URL -> status."""
    from lib import Recorder, cycle, lua_str
    with Recorder() as rec, Engine() as e:
        rec.route("POST", "/erp", status=201, json={"ok": True})
        e.write("out.lua", cycle("out", """    hw.webhook { name = "in" },
    hw.request { name = "tell", method = "post", url = %s .. "/erp", json = { a = 1 } },""" % lua_str(rec.url)))
        e.start()
        r = e.post(e.hook_url("out", "in"), json={})
        t = e.wait_tx(r.json["transaction"], "completed")
        tell = [h for h in t["history"] if h["step"] == "tell"]
        eq(len(tell), 1)
        eq(tell[0]["note"], "POST %s/erp -> 201" % rec.url)
