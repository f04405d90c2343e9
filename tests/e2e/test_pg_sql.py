"""The admin reads, search and retention on PostgreSQL answer what SQLite
answers: the same traffic goes to one engine on each store, and the admin
API's answers are compared byte for byte (times, ports and webhook tokens
aside; one transaction's as parsed JSON), the searches with %, _, quotes and bytes that are not UTF-8, and the
rows a purge leaves.  Skipped where no PostgreSQL can run."""
import json as _json
import re
import time
import urllib.parse

from lib import test, Engine, eq, ok, wait_until, cycle, pg_database

ODD = "50%_off 'q' \"d\" \\ \u00e9 \u2028 \u0001"
ODD_HEADER = "50%_off 'q' \"d\" \\ x"  # what a header may carry

ORDERS = cycle("orders", """
    hw.webhook { name = "new", fields = { order_id = "string", pct = "string?", customer = "object?" },
                 verify = hw.verify.header { name = "X-Token", value = "tok" } },
    hw.webhook { name = "status", match = "order_id" },
    hw.step { name = "note", run = function(tx) tx.data.noted = (tx.data.noted or 0) + 1 end },
""")
KEEP = cycle("k", """
    hw.webhook { name = "in", dedupe = { header = "x-id" } },
    hw.step { name = "s", run = function(tx) if tx.data.fail then error(tx.data.fail) end end },
""", "\n  keep = { completed = 3, failed = 3600 },")


def pair(files, env=None):
    """One engine on SQLite (store="" keeps it there whatever
    HOOKWORK_TEST_STORE says) and one on a fresh PostgreSQL database."""
    url = pg_database()
    return (Engine(files, env=env, store=""), Engine(files, env=env, store=url))


def norm(text):
    text = re.sub(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"', '"TIME"', text)
    text = re.sub(r"127\.0\.0\.1:\d+", "HOST", text)
    text = re.sub(r"/tmp/hookwork-e2e-[^/]+", "TMP", text)
    return re.sub(r"/hooks/[A-Za-z0-9_-]+", "/hooks/TOKEN", text)


def traffic(e):
    """The same requests, one at a time (so ids and runs match)."""
    new, status = e.hook_url("orders", "new"), e.hook_url("orders", "status")
    ids = []
    for i, pct in enumerate(["50%_off", "50xyoff", "50%", "5_%", ODD, "it's"]):
        r = e.post(new + "?src=shop&n=%d" % i,
                   json={"order_id": "SO-%d" % i, "pct": pct, "customer": {"email": "a%d@b.c" % (i % 2)}},
                   headers={"X-Token": "tok", "X-Odd": ODD_HEADER, "Cookie": "sid=1"})
        eq(r.status, 202, r.text)
        ids.append(r.json["transaction"])
        e.wait_tx(ids[-1], "waiting")
    for i in (1, 3):
        eq(e.post(status, json={"order_id": "SO-%d" % i, "s": ODD}).status, 202)
        wait_until(lambda: e.tx(ids[i])["data"].get("noted") == 1, msg="resumed")
    k = e.hook_url("k", "in")
    for n, fail in enumerate((None, ODD, None)):
        r = e.post(k, json={"fail": fail} if fail else {}, headers={"X-Id": "key-%d" % n})
        eq(r.status, 202, r.text)
        e.wait_tx(r.json["transaction"], ["completed", "failed"])
    return ids


QUERIES = [
    "", "?limit=2", "?state=waiting", "?state=failed", "?cycle=orders&state=waiting",
    "?step=note", "?match=SO-1", "?match=SO-%25", "?match=SO-_",
    "?q=pct=50%25_off", "?q=pct=50%25", "?q=pct=5_%25", "?q=pct=" + urllib.parse.quote(ODD),
    "?q=pct=it's", "?q=pct=50xyoff", "?q=customer.email=a1@b.c", "?q=order_id=SO-%25",
    "?step=%25", "?cycle=%FF", "?q=pct=%FF%FE", "?q=pct=a%00b", "?match=%00",
    "?page=1&limit=3", "?since=0", "?until=1", "?since=2000-01-01T00:00:00Z&until=2100-01-01",
    "?q=p%2C%7B%7D.x=1",
]


@test
def admin_answers_are_byte_identical_on_both_stores():
    sq, pg = pair({"orders.lua": ORDERS, "k.lua": KEEP})
    with sq, pg:
        sq.start()
        pg.start()
        ids = traffic(sq)
        eq(traffic(pg), ids, "the same ids on both stores")
        for q in QUERIES:
            a = sq.admin("GET", "/api/transactions" + q)
            b = pg.admin("GET", "/api/transactions" + q)
            eq((b.status, norm(b.text)), (a.status, norm(a.text)), "GET /api/transactions" + q)
        # the exact-match searches find exactly their own
        eq([t["id"] for t in pg.admin("GET", "/api/transactions?q=pct=50%25_off").json], [ids[0]])
        eq([t["id"] for t in pg.admin("GET", "/api/transactions?q=pct=" + urllib.parse.quote(ODD)).json], [ids[4]])
        eq(pg.admin("GET", "/api/transactions?q=pct=%FF%FE").json, [], "bytes that are not UTF-8 find nothing")
        # cursor paging walks the same pages
        for e in (sq, pg):
            seen, cur = [], None
            while True:
                page = e.admin("GET", "/api/transactions?page=1&limit=4" + ("&cursor=" + cur if cur else "")).json
                seen += [t["id"] for t in page["transactions"]]
                cur = page["next"]
                if not cur:
                    break
            e.pages = seen
        eq(pg.pages, sq.pages)
        eq(len(pg.pages), 9)
        for i in [*ids, str(int(ids[-1]) + 1), str(int(ids[-1]) + 3), "999"]:
            # a stored request's headers and query are in the order the
            # engine's Lua table gave them, which differs between processes:
            # one transaction is compared as parsed JSON
            a = sq.admin("GET", "/api/transactions/" + i)
            b = pg.admin("GET", "/api/transactions/" + i)
            eq((b.status, _json.loads(norm(b.text))), (a.status, _json.loads(norm(a.text))),
               "GET /api/transactions/" + i)
        tx = pg.tx(ids[1])
        eq(tx["request"]["headers"]["cookie"], "[redacted]")
        eq(tx["request"]["headers"]["x-odd"], ODD_HEADER)
        eq(tx["requests"][0]["query"], {}, "the resume's request")
        ok(len(tx["history"]) >= 3, tx["history"])
        a, b = sq.admin("GET", "/api/cycles"), pg.admin("GET", "/api/cycles")
        eq(_json.loads(norm(b.text)), _json.loads(norm(a.text)), "counts per cycle and state")
        # a bulk retry picks the same failed transactions
        a = sq.admin("POST", "/api/transactions/retry?cycle=k&since=0", json={})
        b = pg.admin("POST", "/api/transactions/retry?cycle=k&since=0", json={})
        eq((b.status, norm(b.text)), (a.status, norm(a.text)), "bulk retry")


@test
def a_purge_deletes_on_postgres_exactly_what_it_deletes_on_sqlite():
    sq, pg = pair({"k.lua": KEEP, "orders.lua": ORDERS}, env={"HOOKWORK_KEEP_UNIT_SECONDS": "1"})

    def send(e, tag):
        k, ids = e.hook_url("k", "in"), []
        for i, fail in enumerate([None, "no", None, None]):
            r = e.post(k, json={"fail": fail} if fail else {}, headers={"X-Id": "%s-%d" % (tag, i)})
            ids.append(r.json["transaction"])
        r = e.post(e.hook_url("orders", "new"), json={"order_id": tag}, headers={"X-Token": "tok"})
        ids.append(r.json["transaction"])
        e.post(e.hook_url("orders", "status"), json={"order_id": tag})
        for i in ids:
            e.wait_tx(i, ["completed", "failed", "waiting"])
        return ids

    def rows(e):
        return {t: sorted(r[0] for r in e.db_rows("SELECT %s FROM %s" % (c, t)))
                for t, c in (("tx", "id"), ("hist", "DISTINCT tx"), ("req", "DISTINCT tx"),
                             ("dedupe", "tx"))}

    with sq, pg:
        sq.start()
        pg.start()
        old = [send(sq, "old"), send(pg, "old")]
        eq(old[0], old[1])
        time.sleep(2)
        new = [send(sq, "new"), send(pg, "new")]
        eq(new[0], new[1])
        ids = old[0]
        # old completed go 3 s after they ended (keep unit 1 s); the new
        # ones a couple of seconds later: stop both in between
        for e in (sq, pg):
            wait_until(lambda: all(e._get_tx(i) is None for i in (ids[0], ids[2], ids[3])),
                       timeout=8, msg="old completed purged")
        ok(all(pg._get_tx(i) is not None for i in new[1][:4]), "the new ones are kept")
        eq(sq.stop(), 0)
        eq(pg.stop(), 0)
        a, b = rows(sq), rows(pg)
        eq(b, a, "the rows left on PostgreSQL and SQLite")
        eq(a["tx"], sorted(int(i) for i in [ids[1], ids[4]] + new[0]), "failed, waiting and the new ones")
        ok(int(ids[0]) not in a["dedupe"] and int(new[0][0]) in a["dedupe"], "keys go with their transactions")


@test
def admin_reads_come_back_after_the_server_restarts():
    """The reader thread's own connection: while PostgreSQL is down an admin
    read answers 500 at once (as a failing SQLite read does), and after the
    server restarts the next read works on a new connection."""
    pg_database()  # skips with the reason outside the postgres stage
    import pgserver
    srv = pgserver.PgServer().start()
    try:
        url = srv.new_database()
        with Engine({"k.lua": KEEP}, store=url) as e:
            e.start()
            tid = e.post(e.hook_url("k", "in"), json={}, headers={"X-Id": "1"}).json["transaction"]
            e.wait_tx(tid, "completed")
            before = e.admin("GET", "/api/transactions/" + tid).text
            srv._run_as([srv._bin("pg_ctl"), "-D", srv.data_dir, "stop", "-m", "immediate", "-w"])
            srv.proc.wait(10)
            srv.proc = None
            t0 = time.time()
            r = e.admin("GET", "/api/transactions", timeout=30)
            eq(r.status, 500, r.text)
            ok(time.time() - t0 < 15, "answered while the server is down")
            srv._spawn(60)
            wait_until(lambda: e.admin("GET", "/api/transactions/" + tid).status == 200, timeout=20,
                       msg="reads work again")
            eq(e.admin("GET", "/api/transactions/" + tid).text, before, "the same answer as before")
            eq([t["id"] for t in e.admin("GET", "/api/transactions").json], [tid])
    finally:
        srv.stop()
