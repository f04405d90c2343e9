"""Scenarios of the web console in a real browser (see run.py)."""

import glob
import os
import re
import time

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from lib import Engine, Recorder, REPO, eq, ok, contains, http_request
from browser import scenario


def examples(extra=None):
    """The repository's example cycles (what a new user sees first), their
    shop connector pointed at a local Recorder standing in for the shop API
    (it answers 200 {"ok": true} to everything)."""
    rec = Recorder()
    files = {}
    for p in glob.glob(os.path.join(REPO, "cycles", "*.lua")):
        if not p.endswith("_test.lua"):
            with open(p) as f:
                files[os.path.basename(p)] = f.read()
    shop = files.get("shop.lua", "")
    files["shop.lua"], n = re.subn(r'base_url = "[^"]*"', 'base_url = "%s/api"' % rec.url, shop)
    eq(n, 1, "cycles/shop.lua has a base_url")
    files.update(extra or {})
    return files


def order(e, oid, amount=500):
    """A new order; its transaction id (orders answers synchronously)."""
    r = e.post(e.hook_url("orders", "new order"), json={"order_id": oid, "amount": amount})
    eq(r.status, 200, "new order %r" % r)
    return r.json.get("id") or r.json["transaction"]


BROKEN = """local hw = require "hookwork"
return hw.cycle { name = "broken",
  steps = { hw.webhook { name = "in" } then } }
"""


@scenario
def cycles_show_and_copy_a_webhook_url_by_keyboard(b):
    with Engine(examples({"broken.lua": BROKEN})) as e:
        e.start()
        url = e.hook_url("orders", "new order")
        b.grant_clipboard(e)
        b.open(e)
        hello = b.wait(lambda: b.card("hello"), msg="cycle hello")
        orders = b.card("orders")
        contains(hello.text, "running")
        contains(orders.text, "connector shop")
        contains(orders.text, "synchronous")
        contains(orders.text, "match order_id")
        broken = b.wait(lambda: b.card("broken"), msg="cycle broken")
        contains(broken.text, "Load error")
        contains(broken.text, "broken.lua, line 3")
        contains(broken.text, "'}' expected")
        ok(b.button("Start", broken).get_attribute("disabled") is not None, "a cycle that never loaded cannot start")
        inputs = [i.get_attribute("value") for i in b.finds("input.url", orders)]
        eq(inputs, [url, e.hook_url("orders", "status")])
        # keyboard only: tab from the top of the page to the copy button
        b.find("body").click()
        target = None
        for _ in range(80):
            ActionChains(b.d).send_keys(Keys.TAB).perform()
            a = b.d.switch_to.active_element
            if a.tag_name == "button" and a.get_attribute("data-url") == url:
                target = a
                break
        ok(target is not None, "the copy button of orders/new order is reachable with Tab")
        ok(b.js("return getComputedStyle(document.activeElement).outlineStyle") != "none",
           "the focused button shows a focus outline")
        ActionChains(b.d).send_keys(Keys.ENTER).perform()
        b.wait_text("#status", "Copied " + url)
        b.wait(lambda: target.text == "Copied", msg="button says Copied")
        eq(b.clipboard(), url)


@scenario
def a_posted_webhook_appears_live_and_shows_its_history(b):
    with Engine(examples()) as e:
        e.start()
        b.open(e, "#/transactions")
        b.wait_css("table.list")
        b.js("window.__noReload = 42")
        tid = order(e, "A7")
        link = b.wait(lambda: [a for a in b.finds("table.list a") if a.text == tid], msg="row of " + tid)[0]
        eq(b.js("return window.__noReload"), 42, "the page did not reload")
        row = link.find_element("xpath", "./ancestor::tr")
        contains(row.text, "waiting")
        contains(row.text, "A7")
        # filter by match value: only A7's row stays
        order(e, "B1")
        b.wait(lambda: len(b.finds("table.list tbody tr")) == 2, msg="two rows")
        m = b.find("input[name=match]")
        m.send_keys("A7", Keys.ENTER)
        b.wait(lambda: [r.text for r in b.finds("table.list tbody tr")] and
               all("A7" in r.text for r in b.finds("table.list tbody tr")), msg="only A7")
        contains(b.d.current_url, "match=A7")
        # open it
        b.wait(lambda: [a for a in b.finds("table.list a") if a.text == tid], msg="row")[0].click()
        b.wait_text("section.run h3", "Run 1")
        steps = [s.text for s in b.finds("section.run .entry .step")]
        eq(steps, ["new order", "enrich", "big?", "shape", "reply", "status"])
        contains(b.finds("section.run .entry")[-1].text, "parked")
        contains(b.finds("section.run .entry")[-2].text, "responded")
        contains(b.find("pre.code").text, '"order_id": "A7"')
        # a resume shows up as run 2 without a reload
        r = e.post(e.hook_url("orders", "status"), json={"order_id": "A7", "status": "Despatched"})
        eq(r.status, 202)
        run2 = b.wait(lambda: [r for r in b.finds("section.run") if "Run 2" in r.text], msg="run 2")[0]
        b.wait(lambda: '"status": "Despatched"' in b.find("pre.code").text, msg="data updated")
        run2 = [r for r in b.finds("section.run") if "Run 2" in r.text][0]
        # the outbound call and the link are in the timeline; the link leads on
        contains(run2.text, "POST /erp/despatched -> 200")
        link = b.wait(lambda: [a for a in b.finds("ul.links a") if a.text.startswith("invoicing #")], msg="link")[0]
        eq(b.js("return window.__noReload"), 42, "the page did not reload")
        b.shot("transaction")
        link.click()
        b.wait(lambda: [a for a in b.finds("ul.links a") if a.text == "orders #" + tid], msg="linked from")


@scenario
def stop_and_start_a_cycle(b):
    with Engine(examples()) as e:
        e.start()
        url = e.hook_url("orders", "new order")
        b.open(e)
        card = b.wait(lambda: b.card("orders"))
        b.button("Stop", card).click()
        b.wait(lambda: "stopped" in b.card("orders").text, msg="orders stopped")
        eq(e.cycle("orders")["state"], "stopped")
        eq(e.post(url, json={"order_id": "S1", "amount": 1}).status, 503)
        contains(e.post(url, json={"order_id": "S1", "amount": 1}).text, "stopped")
        eq(e.cycle("hello")["state"], "running")
        focused = b.d.switch_to.active_element
        eq(focused.text, "Start", "focus stays on the (now) Start button")
        b.button("Start", b.card("orders")).click()
        b.wait(lambda: "Stop" in b.card("orders").text and "running" in b.card("orders").text, msg="running")
        eq(e.cycle("orders")["state"], "running")
        eq(e.post(url, json={"order_id": "S2", "amount": 1}).status, 200)


@scenario
def edit_allowed_ips_with_an_invalid_entry_then_valid(b):
    with Engine(examples()) as e:
        e.start()
        b.allow("/api/connectors/shop", 400)
        b.open(e, "#/connectors")
        card = b.wait(lambda: b.card("shop"))
        area = b.find("textarea", card)
        eq(area.get_attribute("value"), "127.0.0.1\n10.1.0.0/16\n::1")
        label = b.find("label[for='%s']" % area.get_attribute("id"), card)
        eq(label.text, "Allowed IPs")
        area.clear()
        area.send_keys("127.0.0.1\nnot-an-ip")
        b.button("Save", card).click()
        err = b.wait_text(".field-error", "not-an-ip")
        contains(err.text, "invalid address")
        eq(area.get_attribute("aria-invalid"), "true")
        ok(err.get_attribute("id") in area.get_attribute("aria-describedby"), "error is tied to the field")
        eq(e.admin("GET", "/api/connectors/shop").json["allowed_ips"], ["127.0.0.1", "10.1.0.0/16", "::1"],
           "nothing changed")
        area.clear()
        area.send_keys("10.0.0.0/8\n::1")
        b.button("Save", card).click()
        b.wait_text("#status", "saved")
        eq(e.admin("GET", "/api/connectors/shop").json["allowed_ips"], ["10.0.0.0/8", "::1"])
        eq(err.text, "")
        eq(area.get_attribute("aria-invalid"), None)
        # effective at once: 127.0.0.1 may no longer send status updates
        order(e, "IP1")
        r = e.post(e.hook_url("orders", "status"), json={"order_id": "IP1", "status": "x"})
        eq(r.status, 403, "127.0.0.1 is no longer allowed")


@scenario
def the_token_is_asked_once_and_kept_for_the_session(b):
    with Engine(examples(), env={"HOOKWORK_ADMIN_TOKEN": "s3cret"}) as e:
        e.start()
        b.allow("/api/", 401)
        b.allow("/metrics", 401)
        b.open(e)
        dlg = b.wait(lambda: b.find("#token-dialog[open]"), msg="the token prompt")
        inp = b.find("#token-input")
        eq(b.d.switch_to.active_element.get_attribute("id"), "token-input", "focus in the prompt")
        inp.send_keys("wrong", Keys.ENTER)
        b.wait_text("#token-error", "did not accept")
        ok(dlg.get_attribute("open") is not None, "still asking")
        inp.send_keys("s3cret", Keys.ENTER)
        b.wait(lambda: b.card("orders"), msg="cycles after the token")
        ok(b.find("#token-dialog").get_attribute("open") is None, "prompt closed")
        eq(b.js("return sessionStorage.getItem('hookwork.token')"), "s3cret")
        mark = len(b.logs())
        # other pages and a reload do not ask again
        b.find("a[data-nav=transactions]").click()
        b.wait_css("table.list")
        b.d.refresh()
        b.wait(lambda: b.find("table.list"), msg="list after reload")
        time.sleep(2.5)  # a poll or two with the kept token
        ok(b.find("#token-dialog").get_attribute("open") is None, "not asked again")
        ok(not [x for x in b.logs()[mark:] if "401" in x.get("message", "")],
           "no 401 after the token was given")


FLAKY = """local hw = require "hookwork"
return hw.cycle { name = "flaky", steps = {
  hw.webhook { name = "in" },
  hw.step { name = "work", run = function(tx) %s end },
  %s
} }
"""


@scenario
def retry_a_failed_transaction_then_all_failed_of_the_cycle(b):
    with Engine(examples({"flaky.lua": FLAKY % ('error("remote said no")', "")})) as e:
        e.start()
        ids = []
        for n in (1, 2, 3):
            r = e.post(e.hook_url("flaky", "in"), json={"n": n})
            ids.append(r.json["transaction"])
        for t in ids:
            e.wait_tx(t, "failed")
        tid = ids[0]
        e.write("flaky.lua", FLAKY % ("tx.data.done = true", 'hw.webhook { name = "v2", match = "n" },'))
        e.hook_url("flaky", "v2", timeout=5)  # the fixed version is live
        b.open(e, "#/tx/" + tid)
        b.wait_text("section.run", "remote said no")
        b.wait(lambda: b.find("#retry"), msg="a Retry button").click()
        b.wait(lambda: "Run 2" in b.find("main").text, msg="run 2")
        t = e.wait_tx(tid, ["waiting", "completed"])
        eq(t["data"].get("done"), True)
        ok(not b.finds("#retry"), "no Retry once it is not failed")
        # the other two from the list: "retry these"
        b.open(e, "#/transactions?cycle=flaky&state=failed")
        b.wait(lambda: len(b.finds("table.list tbody tr")) == 2, msg="two failed")
        b.wait(lambda: b.find("#retry-all")).click()
        b.find("#retry-all-no").click()
        eq(b.d.switch_to.active_element.get_attribute("id"), "retry-all", "focus back")
        eq(e.tx(ids[1])["state"], "failed", "No retried nothing")
        b.find("#retry-all").click()
        b.find("#retry-all-yes").click()
        b.wait_text("#status", "Retried 2")
        for t in ids[1:]:
            eq(e.wait_tx(t, ["waiting", "completed"])["data"].get("done"), True)
        b.wait(lambda: not b.finds("table.list tbody tr"), msg="no failed left in the list")


@scenario
def waiting_rejections_metrics_and_phone_width(b):
    with Engine(examples()) as e:
        e.start()
        order(e, "W1")
        order(e, "W2")
        b.open(e, "#/waiting")
        grp = b.wait(lambda: b.card("orders › status"), msg="group orders › status")
        b.wait(lambda: len(b.finds("tbody tr", grp)) == 2, msg="two waiting")
        contains(grp.text, "matched on order_id")
        contains(grp.text, e.hook_url("orders", "status"))
        # recent rejections with their reasons
        bad = e.post(e.hook_url("orders", "new order"), json={"order_id": "R1"})
        eq(bad.status, 400)
        b.find("a[data-nav=rejections]").click()
        row = b.wait_text("table.list tbody tr", "amount")
        contains(row.text, "field 'amount': missing")
        contains(row.text, "400")
        contains(row.text, "new order")
        # metrics: a chart with a line once two samples were taken
        b.find("a[data-nav=metrics]").click()
        for i in range(3):
            order(e, "M%d" % i, 1 if i else 500)
            time.sleep(0.7)
        b.wait(lambda: b.finds("figure.chart-box svg polyline"), timeout=12, msg="a drawn line")
        contains(b.find("figure.chart-box figcaption").text, "webhook requests")
        b.wait_text("table.list", "new order")
        # phone width: nothing wider than the screen
        b.find("a[data-nav=cycles]").click()
        b.wait(lambda: b.card("orders"))
        b.d.set_window_size(1280, 900)
        time.sleep(2.2)  # the overview chart gets a point
        b.shot("console")
        b.d.set_window_size(375, 812)
        for route in ("#/cycles", "#/transactions", "#/waiting", "#/connectors", "#/metrics"):
            b.open(e, route)
            b.wait(lambda: b.find("main h1"))
            time.sleep(0.3)
            w = b.js("return [document.documentElement.scrollWidth, window.innerWidth]")
            ok(w[0] <= w[1], "no horizontal scrolling at 375 px on %s" % route, w)
        b.open(e, "#/cycles")
        b.wait(lambda: b.card("orders"))
        b.shot("console-phone")
        # every interactive thing is a real control, none a clickable div
        eq(b.js("return [...document.querySelectorAll('[onclick],[tabindex]:not(main):not(pre)')].length"), 0)


@scenario
def assets_load_without_token_and_errors_stay_out_of_the_console(b):
    """The page itself loads with no token (nothing but the prompt), and a
    page with no data has no console error at all."""
    with Engine({}, env={"HOOKWORK_ADMIN_TOKEN": "t"}) as e:
        e.start()
        r = http_request("127.0.0.1", e.admin_port, "GET", "/")
        eq(r.status, 200)
        b.allow("/api/", 401)
        b.allow("/metrics", 401)
        b.open(e)
        b.wait(lambda: b.find("#token-dialog[open]"))
        b.find("#token-input").send_keys("t", Keys.ENTER)
        b.wait_text("main", "No cycles")


@scenario
def replay_then_cancel_from_the_transaction_page(b):
    with Engine(examples()) as e:
        e.start()
        tid = order(e, "RP1")
        b.open(e, "#/tx/" + tid)
        req = b.wait(lambda: b.find("details.request"), msg="the original request")
        contains(req.text, "Original request")
        contains(req.text, "POST " + e.hook_path("orders", "new order"))
        contains(req.text, '"order_id": "RP1"')
        b.wait(lambda: b.find("#replay")).click()
        b.wait(lambda: b.d.current_url.split("#/tx/")[1] != tid, msg="the new transaction's page")
        new = b.d.current_url.split("#/tx/")[1]
        b.wait(lambda: [a for a in b.finds("ul.links a") if a.text == "#" + tid], msg="replay of link")
        eq(e.wait_tx(new, "waiting")["replay_of"], tid)
        # cancel asks first; Keep leaves it alone
        b.wait(lambda: b.find("#cancel")).click()
        b.find("#cancel-no").click()
        eq(b.d.switch_to.active_element.get_attribute("id"), "cancel", "focus back on Cancel")
        eq(e.tx(new)["state"], "waiting")
        b.find("#cancel").click()
        b.find("#cancel-yes").click()
        b.wait(lambda: "cancelled" in b.find("section.card").text, msg="shown as cancelled")
        eq(e.tx(new)["state"], "cancelled")
        ok(not b.finds("#cancel"), "no Cancel once it is cancelled")
        r = e.post(e.hook_url("orders", "status"), json={"order_id": "RP1", "status": "x"})
        eq(r.status, 202, "the original still waits and takes the status")
        eq(e.tx(new)["state"], "cancelled")


@scenario
def search_in_data_and_page_through(b):
    with Engine(examples()) as e:
        e.start()
        hello = e.hook_url("hello", "in")
        for i in range(55):
            eq(e.post(hello, json={"name": "n%d" % i}).status, 200)
        eq(e.post(hello, json={"name": "Ada"}).status, 200)
        b.open(e, "#/transactions?cycle=hello")
        b.wait(lambda: len(b.finds("table.list tbody tr")) == 50, msg="a page of 50")
        first = [r.text.split()[0] for r in b.finds("table.list tbody tr")]
        older = b.button("Older")
        ok(older.get_attribute("disabled") is None, "Older is enabled")
        older.click()
        b.wait(lambda: len(b.finds("table.list tbody tr")) == 6, msg="the last 6")
        rest = [r.text.split()[0] for r in b.finds("table.list tbody tr")]
        eq(sorted(first + rest, key=int), [str(i) for i in range(1, 57)])
        ok(b.button("Older").get_attribute("disabled") is not None, "no page after the last")
        b.button("Newer").click()
        b.wait(lambda: len(b.finds("table.list tbody tr")) == 50, msg="back to page 1")
        q = b.find("input[name=q]")
        q.send_keys("name=Ada", Keys.ENTER)
        b.wait(lambda: len(b.finds("table.list tbody tr")) == 1, msg="one match")
        a = b.find("table.list tbody a")
        eq(a.text, "56")
        a.click()
        b.wait(lambda: '"name": "Ada"' in b.find("pre.code").text, msg="Ada's data")
