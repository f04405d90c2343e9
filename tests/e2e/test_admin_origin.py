"""The admin API refuses state changes a browser sends on behalf of another
site (Origin or Sec-Fetch-Site), so a page elsewhere cannot stop a cycle
through a browser that can reach the admin port."""

from lib import Engine, test, eq, contains

CYCLE = '''local hw = require "hookwork"
return hw.cycle { name = "c", steps = { hw.webhook { name = "in" } } }
'''


@test
def cross_site_post_is_refused_and_changes_nothing():
    with Engine({"c.lua": CYCLE}) as e:
        e.start()
        r = e.admin("POST", "/api/cycles/c/stop", headers={"Origin": "http://evil.example"})
        eq(r.status, 403)
        contains(r.json["error"], "cross-site request refused")
        r = e.admin("POST", "/api/cycles/c/stop", headers={"Sec-Fetch-Site": "cross-site"})
        eq(r.status, 403)
        r = e.admin("POST", "/api/cycles/c/stop", headers={"Origin": "null"})
        eq(r.status, 403)
        eq(e.cycle("c")["state"], "running")


@test
def same_origin_and_tools_without_origin_may_change_state():
    with Engine({"c.lua": CYCLE}) as e:
        e.start()
        r = e.admin("POST", "/api/cycles/c/stop",
                    headers={"Origin": "http://127.0.0.1:%d" % e.admin_port})
        eq(r.status, 200, r.text)
        eq(e.cycle("c")["state"], "stopped")
        eq(e.admin("POST", "/api/cycles/c/start").status, 200)
        eq(e.cycle("c")["state"], "running")
        # reads stay open: another site's page cannot read the answer anyway
        eq(e.admin("GET", "/api/cycles", headers={"Origin": "http://evil.example"}).status, 200)
