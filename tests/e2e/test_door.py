"""Issue 11: the door. Verification (every scheme against published vectors and
its failure cases), dedupe, any body, CORS, hw.crypto. Black-box over real HTTP."""

import base64
import gzip
import hashlib
import hmac
import json
import os
import threading
import time
import zlib

from lib import (cycle, Engine, Recorder, test, eq, ok, contains, wait_until, lua_str)

KEYS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keys")


def key(name):
    with open(os.path.join(KEYS, name)) as f:
        return f.read()


TOKENS = json.load(open(os.path.join(KEYS, "toks.json")))

SECRET_TEXT = "s3cr3t-DOOR-value-that-must-not-leak"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs_jwt(secret, claims, alg="HS256"):
    h = b64u(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    p = b64u(json.dumps(claims).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    s = b64u(hmac.new(secret.encode(), (h + "." + p).encode(), digest).digest())
    return h + "." + p + "." + s


def count(e, cyc):
    return len(e.txs(cycle=cyc, limit=10000))


def accepted(r):
    eq(r.status, 202, "status (body %r)" % r.body)
    return r.json["transaction"]


def post(e, url, body, headers):
    if isinstance(body, str):
        body = body.encode()
    return e.post(url, body=body, headers=headers)


# ------------------------------------------------------------- published vectors

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TS = "1614265330"
SW_BODY = '{"test": 2432232314}'
SW_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def sw_sign(secret, msg_id, ts, body):
    k = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(k, ("%s.%s.%s" % (msg_id, ts, body)).encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@test
def standard_webhooks_specification_vector():
    eq(sw_sign(SW_SECRET, SW_ID, SW_TS, SW_BODY), SW_SIG, "our signer reproduces the spec's vector")
    src = cycle("sw", """
    hw.webhook { name = "in", verify = hw.verify.standard_webhooks {
                   secret = hw.secret("SW_SECRET"), tolerance = 1e10 } },
""")
    with Engine({"sw.lua": src}, env={"SW_SECRET": SW_SECRET}) as e:
        e.start()
        url = e.hook_url("sw", "in")
        h = {"webhook-id": SW_ID, "webhook-timestamp": SW_TS, "webhook-signature": SW_SIG,
             "Content-Type": "application/json"}
        tx = accepted(post(e, url, SW_BODY, h))
        eq(e.wait_tx(tx, "completed")["data"], {"test": 2432232314})
        # Svix's header names, and a list of signatures with one that matches
        h = {"svix-id": SW_ID, "svix-timestamp": SW_TS,
             "svix-signature": "v1,Zm9vYmFy v2,xxx " + SW_SIG, "Content-Type": "application/json"}
        accepted(post(e, url, SW_BODY, h))
        h["svix-signature"] = "v1,Zm9vYmFy"
        r = post(e, url, SW_BODY, h)
        eq((r.status, r.json), (401, {"error": "signature: no matching signature"}))
        eq(count(e, "sw"), 2)


@test
def github_documented_example():
    src = cycle("gh", """
    hw.webhook { name = "in", verify = hw.verify.github { secret = hw.secret("GH_SECRET") } },
""")
    with Engine({"gh.lua": src}, env={"GH_SECRET": "It's a Secret to Everybody"}) as e:
        e.start()
        url = e.hook_url("gh", "in")
        sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        tx = accepted(post(e, url, "Hello, World!", {"X-Hub-Signature-256": sig,
                                                     "Content-Type": "text/plain"}))
        t = e.wait_tx(tx, "completed")
        eq(t["data"], {})
        # upper-case hex is the same signature
        accepted(post(e, url, "Hello, World!", {"X-Hub-Signature-256": sig.upper().replace("SHA256", "sha256")}))
        r = post(e, url, "Hello, World?", {"X-Hub-Signature-256": sig})
        eq((r.status, r.json), (401, {"error": "signature: no matching signature"}))
        eq(count(e, "gh"), 2)


STRIPE_SECRET = "whsec_test_secret_for_stripe_docs"
STRIPE_TS = "1492774577"


def stripe_sig(secret, ts, body):
    return hmac.new(secret.encode(), ("%s.%s" % (ts, body)).encode(), hashlib.sha256).hexdigest()


@test
def stripe_documented_procedure_fixed_timestamp():
    body = '{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}'
    src = cycle("st", """
    hw.webhook { name = "in", verify = hw.verify.stripe { secret = hw.secret("ST"), tolerance = 1e10 } },
""")
    with Engine({"st.lua": src}, env={"ST": STRIPE_SECRET}) as e:
        e.start()
        url = e.hook_url("st", "in")
        # Stripe's header: t, then v1 (and possibly v0) signatures
        hdr = "t=%s,v1=%s,v0=%s" % (STRIPE_TS, stripe_sig(STRIPE_SECRET, STRIPE_TS, body), "00" * 32)
        tx = accepted(post(e, url, body, {"Stripe-Signature": hdr, "Content-Type": "application/json"}))
        eq(e.wait_tx(tx, "completed")["data"]["type"], "payment_intent.succeeded")
        # the key is the whole secret string, whsec_ included
        bad = "t=%s,v1=%s" % (STRIPE_TS, stripe_sig(STRIPE_SECRET[len("whsec_"):], STRIPE_TS, body))
        r = post(e, url, body, {"Stripe-Signature": bad})
        eq((r.status, r.json), (401, {"error": "signature: no matching signature"}))
        eq(count(e, "st"), 1)


SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
              "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
              "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
              "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


@test
def slack_documented_example():
    src = cycle("sl", """
    hw.webhook { name = "in", verify = hw.verify.slack { secret = hw.secret("SL"), tolerance = 1e10 } },
""")
    with Engine({"sl.lua": src}, env={"SL": SLACK_SECRET}) as e:
        e.start()
        url = e.hook_url("sl", "in")
        h = {"X-Slack-Signature": SLACK_SIG, "X-Slack-Request-Timestamp": SLACK_TS,
             "Content-Type": "application/x-www-form-urlencoded"}
        tx = accepted(post(e, url, SLACK_BODY, h))
        t = e.wait_tx(tx, "completed")
        eq((t["data"]["command"], t["data"]["user_name"], t["data"]["text"]), ("/webhook-collect", "roadrunner", ""))
        eq(count(e, "sl"), 1)


# ------------------------------------------------------------- every scheme, every failure

def now_ts():
    return str(int(time.time()))


def mac(alg, secret, msg, enc="hex"):
    d = hmac.new(secret if isinstance(secret, bytes) else secret.encode(), msg.encode(), alg).digest()
    return d.hex() if enc == "hex" else base64.b64encode(d).decode()


SW_A = "whsec_" + base64.b64encode(b"first secret key for door tests").decode()
SW_B = "whsec_" + base64.b64encode(b"second, rotated key").decode()

# Each scheme: its Lua (two secrets A and B from the environment), a signer
# headers(secret, body, ts), the two secrets, what a changed body / stale
# timestamp / missing header answer.
SCHEMES = {
    "standard_webhooks": dict(
        lua='hw.verify.standard_webhooks { secret = { hw.secret("A"), hw.secret("B") } }',
        a=SW_A, b=SW_B, wrong="whsec_" + base64.b64encode(b"nope").decode(),
        sign=lambda s, body, ts: {"webhook-id": "msg_1", "webhook-timestamp": ts,
                                  "webhook-signature": sw_sign(s, "msg_1", ts, body)},
        body_signed=True, stale=True, drop="webhook-signature",
        missing="signature: missing webhook-signature header", kind="signature"),
    "github": dict(
        lua='hw.verify.github { secret = { hw.secret("A"), hw.secret("B") } }',
        a="gh-one", b="gh-two", wrong="gh-wrong",
        sign=lambda s, body, ts: {"X-Hub-Signature-256": "sha256=" + mac(hashlib.sha256, s, body)},
        body_signed=True, stale=False, drop="X-Hub-Signature-256",
        missing="signature: missing X-Hub-Signature-256 header", kind="signature"),
    "stripe": dict(
        lua='hw.verify.stripe { secret = { hw.secret("A"), hw.secret("B") } }',
        a="whsec_stripe_one", b="whsec_stripe_two", wrong="whsec_stripe_wrong",
        sign=lambda s, body, ts: {"Stripe-Signature": "t=%s,v1=%s" % (ts, stripe_sig(s, ts, body))},
        body_signed=True, stale=True, drop="Stripe-Signature",
        missing="signature: missing Stripe-Signature header", kind="signature"),
    "shopify": dict(
        lua='hw.verify.shopify { secret = { hw.secret("A"), hw.secret("B") } }',
        a="shpss_one", b="shpss_two", wrong="shpss_wrong",
        sign=lambda s, body, ts: {"X-Shopify-Hmac-Sha256": mac(hashlib.sha256, s, body, "base64")},
        body_signed=True, stale=False, drop="X-Shopify-Hmac-Sha256",
        missing="signature: missing X-Shopify-Hmac-Sha256 header", kind="signature"),
    "slack": dict(
        lua='hw.verify.slack { secret = { hw.secret("A"), hw.secret("B") } }',
        a="slack-one", b="slack-two", wrong="slack-wrong",
        sign=lambda s, body, ts: {"X-Slack-Request-Timestamp": ts,
                                  "X-Slack-Signature": "v0=" + mac(hashlib.sha256, s, "v0:%s:%s" % (ts, body))},
        body_signed=True, stale=True, drop="X-Slack-Signature",
        missing="signature: missing X-Slack-Signature header", kind="signature"),
    "hmac": dict(
        lua='hw.verify.hmac { secret = { hw.secret("A"), hw.secret("B") }, header = "X-Sig",'
            ' algorithm = "sha512", encoding = "base64", prefix = "sha512=" }',
        a="hm-one", b="hm-two", wrong="hm-wrong",
        sign=lambda s, body, ts: {"X-Sig": "sha512=" + mac(hashlib.sha512, s, body, "base64")},
        body_signed=True, stale=False, drop="X-Sig",
        missing="signature: missing X-Sig header", kind="signature"),
    "basic": dict(
        lua='hw.verify.basic { user = "door", password = { hw.secret("A"), hw.secret("B") } }',
        a="pw-one", b="pw-two", wrong="pw-wrong",
        sign=lambda s, body, ts: {"Authorization": "Basic " + base64.b64encode(("door:" + s).encode()).decode()},
        body_signed=False, stale=False, drop="Authorization",
        missing="auth: missing Authorization header", kind="auth"),
    "bearer": dict(
        lua='hw.verify.bearer { token = { hw.secret("A"), hw.secret("B") } }',
        a="tok-one", b="tok-two", wrong="tok-wrong",
        sign=lambda s, body, ts: {"Authorization": "Bearer " + s},
        body_signed=False, stale=False, drop="Authorization",
        missing="auth: missing Authorization header", kind="auth"),
    "header": dict(
        lua='hw.verify.header { name = "X-Api-Key", value = { hw.secret("A"), hw.secret("B") } }',
        a="key-one", b="key-two", wrong="key-wrong",
        sign=lambda s, body, ts: {"X-Api-Key": s},
        body_signed=False, stale=False, drop="X-Api-Key",
        missing="auth: missing X-Api-Key header", kind="auth"),
    "jwt": dict(
        lua='hw.verify.jwt { secret = { hw.secret("A"), hw.secret("B") }, audience = "hookwork",'
            ' issuer = "door-tests", algorithms = { "HS256", "HS512" } }',
        a="jwt-one", b="jwt-two", wrong="jwt-wrong",
        sign=lambda s, body, ts: {"Authorization": "Bearer " + hs_jwt(
            s, {"aud": "hookwork", "iss": "door-tests", "exp": int(ts) + 600 if int(ts) > time.time() - 60 else int(ts)},
            "HS512" if s.endswith("two") else "HS256")},
        body_signed=False, stale=True, drop="Authorization",
        missing="auth: missing Authorization header", kind="auth"),
}

EXPECT = {"wrong": {"signature": "signature: no matching signature", "auth": None},
          "stale": "timestamp outside the tolerance of 300 seconds"}


def scheme_case(name):
    sc = SCHEMES[name]

    def run():
        src = cycle("v", """
    hw.webhook { name = "in", verify = %s },
    hw.step { name = "mark", run = function(tx) tx.data.ran = true end },
""" % sc["lua"])
        with Engine({"v.lua": src}, env={"A": sc["a"], "B": sc["b"]}) as e:
            e.start()
            url = e.hook_url("v", "in")
            body = '{"order":"A-1","amount":12.5}'
            ts = now_ts()
            base = {"Content-Type": "application/json"}
            # both secrets pass (rotation)
            for s in (sc["a"], sc["b"]):
                h = dict(base, **sc["sign"](s, body, ts))
                tx = accepted(post(e, url, body, h))
                t = e.wait_tx(tx, "completed")
                eq((t["data"]["order"], t["data"]["ran"]), ("A-1", True))
            rejected = []
            # a wrong secret
            r = post(e, url, body, dict(base, **sc["sign"](sc["wrong"], body, ts)))
            eq(r.status, 401, "wrong secret (body %r)" % r.body)
            ok(r.json["error"].startswith(sc["kind"] + ": "), "reason kind", r.json)
            rejected.append(r)
            # one changed body byte
            if sc["body_signed"]:
                h = dict(base, **sc["sign"](sc["a"], body, ts))
                r = post(e, url, body.replace("12.5", "12.6"), h)
                eq((r.status, r.json), (401, {"error": "signature: no matching signature"}), "changed byte")
                rejected.append(r)
            # a stale timestamp (expired token for jwt)
            if sc["stale"]:
                old = str(int(time.time()) - 1000)
                r = post(e, url, body, dict(base, **sc["sign"](sc["a"], body, old)))
                eq(r.status, 401, "stale (body %r)" % r.body)
                if name == "jwt":
                    eq(r.json, {"error": "auth: token expired"})
                else:
                    eq(r.json, {"error": "signature: " + EXPECT["stale"]})
                rejected.append(r)
            # the header missing
            h = dict(base, **sc["sign"](sc["a"], body, ts))
            h = {k: v for k, v in h.items() if k != sc["drop"]}
            r = post(e, url, body, h)
            eq((r.status, r.json), (401, {"error": sc["missing"]}), "missing header")
            rejected.append(r)
            # nothing stored for any of them; counted and logged once each
            eq(count(e, "v"), 2, "only the two good requests are stored")
            m = e.metrics()
            n = sum(int(float(ln.rsplit(" ", 1)[1])) for ln in m.splitlines()
                    if ln.startswith('hookwork_rejected_requests_total{cycle="v",step="in"'))
            eq(n, len(rejected), "rejections counted")
            eq(e.log().count("v/in: 401 for"), len(rejected), "one log line per rejection")
            for s in (sc["a"], sc["b"]):
                ok(s not in e.log(), "secret not in the log")
    run.__name__ = "verify_" + name + "_rotation_and_failures"
    return run


for _n in SCHEMES:
    test(scheme_case(_n))


@test
def jwt_rs256_es256_and_claims():
    src = cycle("j", """
    hw.webhook { name = "rs", verify = hw.verify.jwt { public_key = { %s, %s }, algorithms = { "RS256" },
                 audience = "hookwork", issuer = "https://issuer.example" } },
""" % (lua_str(key("rsa2.pub")), lua_str(key("rsa.pub")))) + cycle("j2", """
    hw.webhook { name = "es", verify = hw.verify.jwt { public_key = %s, algorithms = { "ES256" } } },
""" % lua_str(key("ec.pub")))
    src_hs = cycle("j3", """
    hw.webhook { name = "hs", verify = hw.verify.jwt { secret = "k", audience = "me", issuer = "it" } },
""")
    with Engine({"j.lua": src.split("\nlocal hw")[0], "j2.lua": "local hw" + src.split("\nlocal hw")[1],
                 "j3.lua": src_hs}) as e:
        e.start()
        rs, es, hs = e.hook_url("j", "rs"), e.hook_url("j2", "es"), e.hook_url("j3", "hs")

        def call(url, tok):
            return post(e, url, "{}", {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
        accepted(call(rs, TOKENS["RS256_ok"]))
        accepted(call(es, TOKENS["ES256_ok"]))
        eq(call(rs, TOKENS["RS256_expired"]).json, {"error": "auth: token expired"})
        eq(call(es, TOKENS["ES256_expired"]).json, {"error": "auth: token expired"})
        # an ES256 token where RS256 is expected: the algorithm is refused
        eq(call(rs, TOKENS["ES256_ok"]).json, {"error": "auth: token algorithm ES256 is not allowed"})
        # a changed payload byte
        h, p, s = TOKENS["ES256_ok"].split(".")
        p2 = b64u(base64.urlsafe_b64decode(p + "==").replace(b"door", b"dooR"))
        eq(call(es, h + "." + p2 + "." + s).json, {"error": "auth: bad token signature"})
        # alg none, and HS256 signed with the public key text (key confusion)
        none = b64u(b'{"alg":"none"}') + "." + p + "."
        eq(call(rs, none).json, {"error": "auth: token algorithm none is not allowed"})
        eq(call(rs, hs_jwt(key("rsa.pub"), {"aud": "hookwork"})).json,
           {"error": "auth: token algorithm HS256 is not allowed"})
        now = int(time.time())
        good = {"aud": "me", "iss": "it", "exp": now + 60}
        accepted(call(hs, hs_jwt("k", good)))
        accepted(call(hs, hs_jwt("k", dict(good, aud=["x", "me"]))))
        eq(call(hs, hs_jwt("k", dict(good, nbf=now + 600))).json, {"error": "auth: token not valid yet"})
        eq(call(hs, hs_jwt("k", dict(good, aud="other"))).json, {"error": "auth: token audience does not match"})
        eq(call(hs, hs_jwt("k", dict(good, iss="other"))).json, {"error": "auth: token issuer does not match"})
        eq(call(hs, hs_jwt("k", dict(good, exp=now - 5))).json, {"error": "auth: token expired"})
        eq(call(hs, "not.a-jwt").json, {"error": "auth: token is not a JWT"})
        r = post(e, hs, "{}", {"Authorization": "Basic eDp5"})
        eq((r.status, r.json), (401, {"error": "auth: Authorization is not a Bearer token"}))
        eq(r.headers.get("www-authenticate"), "Bearer")
        eq(count(e, "j") + count(e, "j2") + count(e, "j3"), 4)


@test
def verify_runs_before_a_synchronous_cycle_stores_anything():
    with Recorder() as rec:
        src = cycle("sy", """
    hw.webhook { name = "in", verify = hw.verify.bearer { token = hw.secret("TOKEN") } },
    hw.request { name = "call", method = "POST", url = %s, json = { x = 1 } },
    hw.respond { name = "reply", body = { done = true } },
""" % lua_str(rec.url + "/side-effect"))
        with Engine({"sy.lua": src}, env={"TOKEN": SECRET_TEXT}) as e:
            e.start()
            url = e.hook_url("sy", "in")
            r = post(e, url, "{}", {"Authorization": "Bearer nope"})
            eq((r.status, r.json), (401, {"error": "auth: wrong token"}))
            eq(r.headers.get("www-authenticate"), "Bearer")
            r = post(e, url, "{}", {"Authorization": "Bearer " + SECRET_TEXT})
            eq((r.status, r.json), (200, {"done": True}))
            eq(count(e, "sy"), 1)
            eq(len(rec.find("POST", "/side-effect")), 1)
            w = e.cycle("sy")["webhooks"][0]
            eq((w["verify"], w.get("dedupe"), w.get("cors")), (["bearer"], None, None))
            # the secret is nowhere in the admin API, the metrics or the log
            for path in ("/api/cycles", "/api/transactions", "/metrics", "/api/connectors"):
                ok(SECRET_TEXT not in e.admin("GET", path).text, "secret in " + path)
            ok(SECRET_TEXT not in e.log(), "secret in the log")


@test
def hw_secret_unset_fails_the_load_naming_the_variable():
    src = cycle("ns", """
    hw.webhook { name = "in", verify = hw.verify.github { secret = hw.secret("DOOR_UNSET_SECRET") } },
""")
    bad = cycle("bad", """
    hw.webhook { name = "in", verify = hw.verify.standard_webhooks { secret = hw.secret("NOT_B64") } },
""")
    admin_tok = cycle("adm", """
    hw.webhook { name = "in", verify = hw.verify.bearer { token = hw.secret("HOOKWORK_ADMIN_TOKEN") } },
""")
    with Engine({"ns.lua": src, "bad.lua": bad, "adm.lua": admin_tok},
                env={"NOT_B64": "whsec_%%%not base64" + SECRET_TEXT, "HOOKWORK_ADMIN_TOKEN": SECRET_TEXT}) as e:
        e.start()
        c = e.cycle("ns")
        eq(c["state"], "stopped")
        contains(c["load_error"], "hw.secret: environment variable DOOR_UNSET_SECRET is not set")
        contains(c["load_error"], "ns.lua:")
        contains(e.cycle("bad")["load_error"], "secret 1 is not whsec_ followed by base64")
        contains(e.cycle("adm")["load_error"], "HOOKWORK_* variables belong to the engine")
        ok(SECRET_TEXT not in e.admin("GET", "/api/cycles").text, "secret in /api/cycles")
        ok(SECRET_TEXT not in e.log(), "secret in the log")


@test
def signature_covers_raw_bytes_before_content_encoding():
    src = cycle("gz", """
    hw.webhook { name = "in", fields = { n = "integer" },
                 verify = hw.verify.github { secret = "raw-bytes" } },
""")
    with Engine({"gz.lua": src}) as e:
        e.start()
        url = e.hook_url("gz", "in")
        plain = b'{"n": 7}'
        packed = gzip.compress(plain)
        sig_raw = "sha256=" + hmac.new(b"raw-bytes", packed, hashlib.sha256).hexdigest()
        sig_plain = "sha256=" + hmac.new(b"raw-bytes", plain, hashlib.sha256).hexdigest()
        h = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        tx = accepted(e.post(url, body=packed, headers=dict(h, **{"X-Hub-Signature-256": sig_raw})))
        eq(e.wait_tx(tx, "completed")["data"], {"n": 7})
        r = e.post(url, body=packed, headers=dict(h, **{"X-Hub-Signature-256": sig_plain}))
        eq(r.status, 401)
        eq(count(e, "gz"), 1)


# ------------------------------------------------------------- dedupe

def dedupe_cycle(name, rec, dedupe, extra_steps="", verify=""):
    return cycle(name, """
    hw.webhook { name = "in", dedupe = %s%s },
    hw.request { name = "patch", method = "PATCH", url = %s, json = function(tx) return { n = tx.data.n } end },
%s""" % (dedupe, verify, lua_str(rec.url + "/remote/" + name), extra_steps))


@test
def dedupe_by_header_runs_once_and_survives_restart():
    with Recorder() as rec:
        with Engine({"dd.lua": dedupe_cycle("dd", rec, '{ header = "X-Delivery" }')}) as e:
            e.start()
            url = e.hook_url("dd", "in")
            first = accepted(e.post(url, json={"n": 1}, headers={"X-Delivery": "d-1"}))
            r = e.post(url, json={"n": 2}, headers={"X-Delivery": "d-1"})
            eq((r.status, r.json), (202, {"accepted": True, "transaction": first, "duplicate": True}))
            other = accepted(e.post(url, json={"n": 3}, headers={"X-Delivery": "d-2"}))
            ok(other != first, "another key is another transaction")
            # no key: not deduplicated
            accepted(e.post(url, json={"n": 4}))
            accepted(e.post(url, json={"n": 4}))
            rec.wait_for("PATCH", "/remote/dd", count=4)
            e.wait_tx(first, "completed")
            eq(count(e, "dd"), 4)
            e.restart()
            r = e.post(url, json={"n": 9}, headers={"X-Delivery": "d-1"})
            eq((r.status, r.json), (202, {"accepted": True, "transaction": first, "duplicate": True}))
            e.kill()  # and after a crash, too
            e.start()
            r = e.post(url, json={"n": 9}, headers={"X-Delivery": "d-2"})
            eq((r.status, r.json), (202, {"accepted": True, "transaction": other, "duplicate": True}))
            time.sleep(0.3)
            eq(len(rec.find("PATCH", "/remote/dd")), 4, "duplicates ran nothing")
            eq(count(e, "dd"), 4)


@test
def dedupe_field_function_and_scheme_delivery_ids():
    with Recorder() as rec:
        files = {
            "f.lua": dedupe_cycle("f", rec, '{ field = "event.id" }'),
            "fn.lua": dedupe_cycle("fn", rec, 'function(req) return req.query.id end'),
            "sw.lua": dedupe_cycle("sw", rec, "true",
                                   verify=', verify = hw.verify.standard_webhooks { secret = %s }' % lua_str(SW_A)),
            "st.lua": dedupe_cycle("st", rec, "true", verify=', verify = hw.verify.stripe { secret = "whsec_x" }'),
            "gh.lua": dedupe_cycle("gh", rec, "true", verify=', verify = hw.verify.github { secret = "g" }'),
            "bad.lua": dedupe_cycle("bad", rec, "true"),
        }
        with Engine(files) as e:
            e.start()
            contains(e.cycle("bad")["load_error"], "'dedupe = true' needs verify = standard_webhooks, stripe or github")
            u = e.hook_url("f", "in")
            a = accepted(e.post(u, json={"n": 1, "event": {"id": 77}}))
            eq(e.post(u, json={"n": 2, "event": {"id": 77}}).json["transaction"], a)
            u = e.hook_url("fn", "in")
            a = accepted(e.post(u + "?id=q1", json={"n": 1}))
            eq(e.post(u + "?id=q1", json={"n": 1}).json, {"accepted": True, "transaction": a, "duplicate": True})
            u = e.hook_url("sw", "in")
            ts = now_ts()
            body = '{"n":1}'
            h = {"webhook-id": "msg_same", "webhook-timestamp": ts,
                 "webhook-signature": sw_sign(SW_A, "msg_same", ts, body)}
            a = accepted(post(e, u, body, h))
            eq(post(e, u, body, h).json["transaction"], a)
            u = e.hook_url("st", "in")
            body = '{"id":"evt_42","n":1}'
            h = {"Stripe-Signature": "t=%s,v1=%s" % (ts, stripe_sig("whsec_x", ts, body))}
            a = accepted(post(e, u, body, h))
            ts2 = str(int(ts) + 1)  # Stripe re-signs a retry; the event id stays
            h = {"Stripe-Signature": "t=%s,v1=%s" % (ts2, stripe_sig("whsec_x", ts2, body))}
            eq(post(e, u, body, h).json["transaction"], a)
            u = e.hook_url("gh", "in")
            body = '{"n":1}'
            h = {"X-GitHub-Delivery": "72d3162e", "X-Hub-Signature-256": "sha256=" + mac(hashlib.sha256, "g", body)}
            a = accepted(post(e, u, body, h))
            eq(post(e, u, body, h).json["transaction"], a)
            # a forged duplicate is still a 401, not a duplicate answer
            h["X-Hub-Signature-256"] = "sha256=" + "0" * 64
            eq(post(e, u, body, h).status, 401)
            for c in ("f", "fn", "sw", "st", "gh"):
                eq(count(e, c), 1, c)


@test
def dedupe_window_expires():
    with Recorder() as rec:
        with Engine({"w.lua": dedupe_cycle("w", rec, '{ header = "X-Id", window = 1 }')}) as e:
            e.start()
            url = e.hook_url("w", "in")
            a = accepted(e.post(url, json={"n": 1}, headers={"X-Id": "k"}))
            eq(e.post(url, json={"n": 1}, headers={"X-Id": "k"}).json.get("duplicate"), True)
            time.sleep(1.3)
            r = e.post(url, json={"n": 1}, headers={"X-Id": "k"})
            b = accepted(r)
            ok(b != a and "duplicate" not in r.json, "a new transaction after the window", r.json)
            eq(e.post(url, json={"n": 1}, headers={"X-Id": "k"}).json["transaction"], b)
            eq(count(e, "w"), 2)


@test
def dedupe_synchronous_first_running_then_its_stored_answer():
    with Recorder() as rec:
        rec.route("PATCH", "/remote/sy", json={"ok": True}, delay=1.5)
        src = dedupe_cycle("sy", rec, '{ header = "X-Id" }', extra_steps="""
    hw.respond { name = "reply", status = 201, headers = { ["X-First"] = "yes" },
                 body = function(tx) return { id = tx.id, n = tx.data.n } end },
""")
        with Engine({"sy.lua": src}) as e:
            e.start()
            url = e.hook_url("sy", "in")
            out = {}
            t = threading.Thread(target=lambda: out.setdefault("r", e.post(url, json={"n": 5}, headers={"X-Id": "s1"})))
            t.start()
            rec.wait_for("PATCH", "/remote/sy")
            r = e.post(url, json={"n": 6}, headers={"X-Id": "s1"})
            eq(r.status, 409, "a duplicate while the first still runs (body %r)" % r.body)
            eq(r.json["error"], "the first delivery of this request is still running")
            t.join(10)
            first = out["r"]
            eq(first.status, 201)
            r = e.post(url, json={"n": 7}, headers={"X-Id": "s1"})
            eq((r.status, r.json, r.headers.get("x-first")), (201, first.json, "yes"))
            e.restart()
            r = e.post(url, json={"n": 8}, headers={"X-Id": "s1"})
            eq((r.status, r.json, r.headers.get("x-first")), (201, first.json, "yes"))
            eq(len(rec.find("PATCH", "/remote/sy")), 1)
            eq(count(e, "sy"), 1)


# ------------------------------------------------------------- any body

ECHO = """
    hw.webhook { name = "in" },
    hw.request { name = "out", method = "POST", url = %s,
                 json = function(tx) return { data = tx.data, raw = utf8.len(tx.request.body) and tx.request.body or nil,
                                              json = tx.request.json } end },
    hw.request { name = "bytes", method = "POST", url = %s,
                 body = function(tx) return tx.request.body end },
"""


def body_engine(rec, extra_files=None, args=()):
    files = {"b.lua": cycle("b", ECHO % (lua_str(rec.url + "/json"), lua_str(rec.url + "/bytes")))}
    files.update(extra_files or {})
    return Engine(files, args=list(args))


def through(e, rec, url, body, headers, n):
    """Posts body, waits for the n-th outbound pair, returns (json record, bytes record, tx)."""
    r = e.post(url, body=body, headers=headers)
    tx = accepted(r)
    js = rec.wait_for("POST", "/json", count=n)[-1]
    raw = rec.wait_for("POST", "/bytes", count=n)[-1]
    return js.json, raw.body, e.wait_tx(tx, "completed")


@test
def bodies_json_any_top_level_bom_and_empty_arrays():
    with Recorder() as rec, body_engine(rec) as e:
        e.start()
        url = e.hook_url("b", "in")
        h = {"Content-Type": "application/json"}
        js, raw, t = through(e, rec, url, b'[{"a":1},{"a":2}]', h, 1)
        eq(js["data"], {"body": [{"a": 1}, {"a": 2}]})
        eq(t["data"]["body"], [{"a": 1}, {"a": 2}])
        eq(raw, b'[{"a":1},{"a":2}]')
        js, raw, t = through(e, rec, url, b"42", h, 2)
        eq(js["data"], {"body": 42})
        js, raw, t = through(e, rec, url, b'"text"', h, 3)
        eq(js["data"], {"body": "text"})
        js, raw, t = through(e, rec, url, b'\xef\xbb\xbf{"bom":true}', h, 4)
        eq(js["data"], {"bom": True})
        eq(raw, b'\xef\xbb\xbf{"bom":true}', "tx.request.body keeps the BOM, byte for byte")


@test
def bodies_gzip_deflate_and_zip_bomb():
    with Recorder() as rec, body_engine(rec, args=["--max-body", "65536"]) as e:
        e.start()
        url = e.hook_url("b", "in")
        plain = json.dumps({"order": "Z-1", "items": list(range(50))}).encode()
        h = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        js, raw, t = through(e, rec, url, gzip.compress(plain), h, 1)
        eq(js["data"]["order"], "Z-1")
        eq(raw, plain, "tx.request.body holds the decoded bytes")
        js, raw, t = through(e, rec, url, zlib.compress(plain), dict(h, **{"Content-Encoding": "deflate"}), 2)
        eq(js["data"]["items"][49], 49)
        # a zip bomb: 40 KiB on the wire, 64 MiB decoded
        bomb = gzip.compress(b"0" * (64 << 20))
        ok(len(bomb) < 65536, "bomb fits under --max-body", len(bomb))
        r = e.post(url, body=bomb, headers=h)
        eq(r.status, 413)
        eq(r.json, {"error": "body over the limit of 65536 bytes once decoded"})
        r = e.post(url, body=b"\x1f\x8b garbage", headers=h)
        eq(r.status, 400)
        contains(r.json["error"], "cannot decode Content-Encoding gzip")
        r = e.post(url, body=plain, headers=dict(h, **{"Content-Encoding": "br"}))
        eq((r.status, r.json), (415, {"error": "unsupported content encoding br"}))
        eq(count(e, "b"), 2)
        ok(e.running(), "engine alive after the bomb")


@test
def bodies_forms_repeated_and_nested_keys():
    with Recorder() as rec, body_engine(rec) as e:
        e.start()
        url = e.hook_url("b", "in")
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        body = b"tag=a&tag=b&customer%5Bname%5D=Ada&customer.email=a%40b.c&single=x&empty="
        js, raw, t = through(e, rec, url, body, h, 1)
        eq(js["data"], {"tag": ["a", "b"], "customer": {"name": "Ada", "email": "a@b.c"},
                        "single": "x", "empty": ""})
        eq(raw, body)
        r = e.post(url, body=b"a=1&a[b]=2", headers=h)
        eq((r.status, r.json), (400, {"error": "form field 'a[b]': mixes a value and nested fields"}))


@test
def bodies_multipart_text_and_file_parts():
    with Recorder() as rec, body_engine(rec) as e:
        e.start()
        url = e.hook_url("b", "in")
        blob = bytes(range(256))
        body = (b"--BOUND\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nQuarterly report\r\n"
                b"--BOUND\r\nContent-Disposition: form-data; name=\"meta[lang]\"\r\n\r\nen\r\n"
                b"--BOUND\r\nContent-Disposition: form-data; name=\"file\"; filename=\"r.bin\"\r\n"
                b"Content-Type: application/octet-stream\r\n\r\n" + blob + b"\r\n--BOUND--\r\n")
        h = {"Content-Type": "multipart/form-data; boundary=BOUND"}
        js, raw, t = through(e, rec, url, body, h, 1)
        eq(js["data"]["title"], "Quarterly report")
        eq(js["data"]["meta"], {"lang": "en"})
        eq(js["data"]["file"], {"filename": "r.bin", "content_type": "application/octet-stream",
                                "size": 256, "base64": base64.b64encode(blob).decode()})
        eq(raw, body, "the multipart body byte for byte")


@test
def bodies_raw_xml_text_binary_and_415_with_fields():
    fields = cycle("f", """
    hw.webhook { name = "in", fields = { id = "string" } },
""")
    with Recorder() as rec, body_engine(rec, {"f.lua": fields}) as e:
        e.start()
        url = e.hook_url("b", "in")
        xml = b'<?xml version="1.0"?><order id="7">caf\xc3\xa9</order>'
        js, raw, t = through(e, rec, url, xml, {"Content-Type": "application/xml"}, 1)
        eq(js["data"], {})
        eq(js["raw"], xml.decode())
        eq(raw, xml)
        binary = bytes(range(256)) * 4
        js, raw, t = through(e, rec, url, binary, {"Content-Type": "application/octet-stream"}, 2)
        eq(raw, binary, "binary body byte for byte")
        js, raw, t = through(e, rec, url, b"just text", {"Content-Type": "text/plain"}, 3)
        eq((js["data"], raw), ({}, b"just text"))
        fu = e.hook_url("f", "in")
        r = e.post(fu, body=xml, headers={"Content-Type": "application/xml; charset=utf-8"})
        eq((r.status, r.json), (415, {"error": "unsupported content type application/xml"}))
        r = e.post(fu, body=b"[1,2]", headers={"Content-Type": "application/json"})
        eq((r.status, r.json), (400, {"error": "expected a JSON object"}))
        eq(count(e, "f"), 0)


# ------------------------------------------------------------- cors

@test
def cors_preflight_and_allowed_origins():
    src = cycle("c", """
    hw.webhook { name = "in", methods = { "POST", "PUT" },
                 verify = hw.verify.hmac { secret = "k", header = "X-Sig" },
                 cors = { origins = { "https://app.example.com" }, max_age = 120 } },
""") 
    star = cycle("s", """
    hw.webhook { name = "in", cors = { origins = "*", headers = { "Content-Type", "X-Custom" } } },
""")
    with Engine({"c.lua": src, "s.lua": star}) as e:
        e.start()
        url = e.hook_url("c", "in")
        pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type, x-sig"}
        r = e.post(url, method="OPTIONS", headers=pre)
        eq(r.status, 204)
        eq(r.headers.get("access-control-allow-origin"), "https://app.example.com")
        eq(r.headers.get("access-control-allow-methods"), "POST, PUT")
        eq(r.headers.get("access-control-allow-headers"), "Content-Type, Authorization, x-sig")
        eq(r.headers.get("access-control-max-age"), "120")
        r = e.post(url, method="OPTIONS", headers=dict(pre, Origin="https://evil.example"))
        eq(r.status, 204)
        ok("access-control-allow-origin" not in r.headers, "no CORS grant for other origins", r.headers)
        body = '{"a":1}'
        h = {"Origin": "https://app.example.com", "X-Sig": mac(hashlib.sha256, "k", body)}
        r = post(e, url, body, h)
        eq(r.status, 202)
        eq(r.headers.get("access-control-allow-origin"), "https://app.example.com")
        r = post(e, url, body, dict(h, **{"X-Sig": "00"}))
        eq(r.status, 401)
        eq(r.headers.get("access-control-allow-origin"), "https://app.example.com")
        r = post(e, url, body, dict(h, Origin="https://evil.example"))
        eq(r.status, 202)
        ok("access-control-allow-origin" not in r.headers, "no grant", r.headers)
        su = e.hook_url("s", "in")
        r = e.post(su, method="OPTIONS", headers={"Origin": "https://x.example", "Access-Control-Request-Method": "POST"})
        eq((r.status, r.headers.get("access-control-allow-origin"), r.headers.get("access-control-allow-headers")),
           (204, "*", "Content-Type, X-Custom"))
        eq(count(e, "c"), 2, "preflights are never stored")
        eq(count(e, "s"), 0)
        # a webhook without cors keeps answering OPTIONS with 405
        plain = cycle("p", '    hw.webhook { name = "in" },\n')
        e.write("p.lua", plain)
        eq(e.post(e.hook_url("p", "in"), method="OPTIONS").status, 405)


# ------------------------------------------------------------- hw.crypto

@test
def hw_crypto_for_cycle_code():
    src = cycle("cr", """
    hw.webhook { name = "in" },
    hw.respond { name = "reply", body = function(tx)
      local r = hw.crypto.random(16)
      local t0 = hw.time.now()
      return {
        hmac_hex = hw.crypto.hmac("sha256", "It's a Secret to Everybody", "Hello, World!", "hex"),
        hmac_b64 = hw.crypto.hmac("sha1", "k", "m", "base64"),
        hmac_raw_len = #hw.crypto.hmac("sha512", "k", "m"),
        sha256 = hw.crypto.sha256("abc", "hex"), sha1 = hw.crypto.sha1("abc", "hex"),
        sha512 = hw.crypto.sha512("abc", "base64url"), md5 = hw.crypto.md5("", "hex"),
        eq1 = hw.crypto.equal("abc", "abc"), eq2 = hw.crypto.equal("abc", "abd"),
        random_len = #r, random_differs = r ~= hw.crypto.random(16),
        b64 = hw.base64.encode("\\251\\255"), b64d = hw.base64.decode("Zm9vYmFy"),
        b64u = hw.base64url.encode("\\251\\255"), b64ud = hw.base64url.decode("Zm9vYmE"),
        hex = hw.hex.encode("\\0\\171"), hexd = hw.hex.decode("414243"),
        bad = select(2, hw.base64.decode("!!")), badhex = select(2, hw.hex.decode("abc")),
        empty = hw.json.encode({ list = hw.json.array({}) }),
        now_ok = type(t0) == "number" and math.abs(t0 - os.time()) < 5,
        badenc = select(2, pcall(hw.crypto.sha256, "x", "base32")),
        badalg = select(2, pcall(hw.crypto.hmac, "sha3", "k", "m")),
      }
    end },
""")
    with Engine({"cr.lua": src}) as e:
        e.start()
        r = e.post(e.hook_url("cr", "in"), json={})
        eq(r.status, 200, "body %r" % r.body)
        j = r.json
        eq(j["hmac_hex"], "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
        eq(j["hmac_b64"], base64.b64encode(hmac.new(b"k", b"m", hashlib.sha1).digest()).decode())
        eq(j["hmac_raw_len"], 64)
        eq(j["sha256"], hashlib.sha256(b"abc").hexdigest())
        eq(j["sha1"], hashlib.sha1(b"abc").hexdigest())
        eq(j["sha512"], b64u(hashlib.sha512(b"abc").digest()))
        eq(j["md5"], "d41d8cd98f00b204e9800998ecf8427e")
        eq((j["eq1"], j["eq2"]), (True, False))
        eq((j["random_len"], j["random_differs"]), (16, True))
        eq((j["b64"], j["b64d"], j["b64u"], j["b64ud"]), ("+/8=", "foobar", "-_8", "fooba"))
        eq((j["hex"], j["hexd"]), ("00ab", "ABC"))
        eq((j["bad"], j["badhex"]), ("not valid base64", "not valid hex"))
        eq(j["now_ok"], True)
        eq(json.loads(j["empty"]), {"list": []})
        contains(j["badenc"], 'encoding must be "hex", "base64" or "base64url"')
        contains(j["badalg"], "unknown HMAC algorithm 'sha3'")


@test
def verify_list_any_scheme_passes():
    src = cycle("l", """
    hw.webhook { name = "in", verify = { hw.verify.bearer { token = "t-1" },
                                         hw.verify.github { secret = "g" } } },
""")
    with Engine({"l.lua": src}) as e:
        e.start()
        url = e.hook_url("l", "in")
        body = '{"a":1}'
        accepted(post(e, url, body, {"Authorization": "Bearer t-1"}))
        accepted(post(e, url, body, {"X-Hub-Signature-256": "sha256=" + mac(hashlib.sha256, "g", body)}))
        r = post(e, url, body, {"X-Hub-Signature-256": "sha256=" + mac(hashlib.sha256, "x", body)})
        eq((r.status, r.json), (401, {"error": "auth: missing Authorization header"}))
        eq(count(e, "l"), 2)


@test
def empty_arrays_stay_arrays_end_to_end():
    with Recorder() as rec, body_engine(rec) as e:
        e.start()
        url = e.hook_url("b", "in")
        h = {"Content-Type": "application/json"}
        # [] stays [] in tx.data, the store, outbound json and the admin API
        js, raw, t = through(e, rec, url, b'{"lines":[],"meta":{},"nested":{"l":[]}}', h, 1)
        eq(js["data"], {"lines": [], "meta": {}, "nested": {"l": []}})
        eq({k: t["data"][k] for k in ("lines", "meta", "nested")}, {"lines": [], "meta": {}, "nested": {"l": []}})
        js, raw, t = through(e, rec, url, b"[]", h, 2)
        eq(js["data"], {"body": []})
        eq(t["data"]["body"], [])


@test
def dedupe_key_of_a_refused_request_is_not_kept():
    """A request the store could not commit (503) leaves no dedupe key: the
    sender's retry after recovery runs, and only then is a duplicate one."""
    from storefault import StoreFault
    with Recorder() as rec:
        e = Engine({"dd.lua": dedupe_cycle("dd", rec, '{ header = "X-Id" }')})
        fault = StoreFault(e)
        with e:
            e.start()
            url = e.hook_url("dd", "in")
            accepted(e.post(url, json={"n": 0}, headers={"X-Id": "warm"}))
            fault.set("eio")
            time.sleep(0.1)
            out = []
            ths = [threading.Thread(target=lambda: out.append(e.post(url, json={"n": 1}, headers={"X-Id": "k1"})))
                   for _ in range(2)]
            for th in ths:
                th.start()
            for th in ths:
                th.join(20)
            eq(sorted(r.status for r in out), [503, 503], "both copies refused while nothing commits")
            fault.set("ok")
            wait_until(lambda: e.post(url, json={"n": 2}, headers={"X-Id": "probe-%f" % time.time()}).status == 202,
                       timeout=15, msg="the store works again")
            r = e.post(url, json={"n": 1}, headers={"X-Id": "k1"})
            first = accepted(r)
            ok("duplicate" not in r.json, "the retry after recovery is not a duplicate", r.json)
            eq(e.post(url, json={"n": 1}, headers={"X-Id": "k1"}).json,
               {"accepted": True, "transaction": first, "duplicate": True})
            e.wait_tx(first, "completed")
            eq(len([x for x in rec.find("PATCH", "/remote/dd") if x.json == {"n": 1}]), 1)


@test
def hmac_payload_function_signs_what_the_sender_signs():
    src = cycle("p", """
    hw.webhook { name = "in", verify = hw.verify.hmac { secret = "pk", header = "X-Signature",
      algorithm = "sha1", encoding = "base64",
      payload = function(req)
        if req.headers["x-boom"] then error("payload kaboom") end
        if req.headers["x-meta"] then
          -- the engine reads the headers raw: this metamethod never runs
          setmetatable(req.headers, { __index = function() error("metamethod ran") end })
          req.headers["x-signature"] = nil
        end
        return req.method .. " " .. req.path .. "?" .. req.query .. "\\n" .. req.body
      end } },
""")
    with Engine({"p.lua": src}) as e:
        e.start()
        url = e.hook_url("p", "in")
        path = e.hook_path("p", "in")
        body = '{"a":1}'
        signed = "POST %s?x=1\n%s" % (path, body)
        h = {"X-Signature": mac(hashlib.sha1, "pk", signed, "base64")}
        accepted(post(e, url + "?x=1", body, h))
        eq(post(e, url + "?x=2", body, h).json, {"error": "signature: no matching signature"})
        r = post(e, url + "?x=1", body, dict(h, **{"X-Boom": "1"}))
        eq((r.status, r.json), (401, {"error": "signature: payload function failed"}))
        contains(e.log(), "payload kaboom")
        r = post(e, url + "?x=1", body, dict(h, **{"X-Meta": "1"}))
        eq((r.status, r.json), (401, {"error": "signature: missing X-Signature header"}))
        eq("metamethod ran" in e.log(), False, "no metamethod of cycle code ran in the check")
        eq(count(e, "p"), 1)


@test
def door_options_misuse_named_at_load():
    from lib import run_cli
    import tempfile
    cases = [
        ('verify = hw.verify.gihub { secret = "x" }', "hw.verify.gihub: no such scheme (did you mean 'github'?)"),
        ("verify = hw.verify.github", "'verify' must be a scheme: call it, as in hw.verify.github { secret = ... }"),
        ('verify = hw.verify.github { secrets = "x" }', "hw.verify.github: unknown option 'secrets' (did you mean 'secret'?)"),
        ('verify = hw.verify.github { secret = "" }', "hw.verify.github: 'secret' entry 1 must be a non-empty string"),
        ('verify = hw.verify.stripe { secret = "s", tolerance = -1 }', "'tolerance' must be a positive number of seconds"),
        ('verify = hw.verify.jwt { algorithms = { "RS256" }, public_key = "nope" }', "public_key 1 is not a PEM public key for RS256"),
        ('verify = hw.verify.jwt { algorithms = { "none" }, secret = "s" }', "unknown algorithm 'none'"),
        ('verify = hw.verify.hmac { secret = "s", header = "X", algorithm = "md4" }', "'algorithm' must be sha1, sha256 or sha512"),
        # (the C compile's own errors come back as load errors, naming the entry)
        ('verify = hw.verify.standard_webhooks { secret = { "whsec_AAAA", "whsec_*" } }',
         "hw.verify.standard_webhooks: secret 2 is not whsec_ followed by base64"),
        ('verify = hw.verify.bearer { token = { %s } }' % ", ".join('"t%d"' % i for i in range(17)),
         "hw.verify.bearer: 'token' takes at most 16 entries"),
        ('dedupe = { field = ".." }', "dedupe: 'field' must name a body field"),
        ('dedupe = { header = "x", windw = 3 }', "dedupe: unknown option 'windw' (did you mean 'window'?)"),
        ('dedupe = { header = "x", field = "y" }', "dedupe: give exactly one of 'header', 'field' or 'key'"),
        ('dedupe = { header = "x", window = 0 }', "dedupe: 'window' must be a positive number of seconds"),
        ('cors = { origins = { "https://a.example/path" } }', "origin 1 must be like https://app.example.com"),
        ('cors = { origin = "*" }', "cors: unknown option 'origin' (did you mean 'origins'?)"),
    ]
    with tempfile.TemporaryDirectory(prefix="hookwork-door-check-") as d:
        for i, (opt, msg) in enumerate(cases):
            p = os.path.join(d, "c%d.lua" % i)
            with open(p, "w") as f:
                f.write(cycle("c%d" % i, '    hw.webhook { name = "in", %s },\n' % opt))
            r = run_cli(["check", p])
            eq(r.returncode, 1, "%s: exit status (stderr %r)" % (opt, r.stderr))
            contains(r.stderr, msg, opt)
            contains(r.stderr, p + ":", "the file is named")


@test
def dedupe_expired_keys_are_purged_from_the_store():
    with Recorder() as rec:
        with Engine({"pg.lua": dedupe_cycle("pg", rec, '{ header = "X-Id", window = 1 }')}) as e:
            e.start()
            url = e.hook_url("pg", "in")
            for i in range(5):
                accepted(e.post(url, json={"n": i}, headers={"X-Id": "p%d" % i}))

            def rows():
                return e.db_rows("SELECT count(*) FROM dedupe")[0][0]
            wait_until(lambda: rows() == 5, msg="keys stored")
            wait_until(lambda: rows() == 0, timeout=10, msg="expired keys purged")


@test
def verify_and_dedupe_on_a_mid_cycle_webhook():
    with Recorder() as rec:
        src = cycle("mc", """
    hw.webhook { name = "order" },
    hw.webhook { name = "status", match = "order_id", dedupe = { header = "X-Event" },
                 verify = hw.verify.shopify { secret = "shop" } },
    hw.request { name = "tell", method = "POST", url = %s,
                 json = function(tx) return { order_id = tx.data.order_id, status = tx.data.status } end },
""" % lua_str(rec.url + "/status"))
        with Engine({"mc.lua": src}) as e:
            e.start()
            tx = accepted(e.post(e.hook_url("mc", "order"), json={"order_id": "SO-1"}))
            e.wait_tx(tx, "waiting")
            url = e.hook_url("mc", "status")
            body = '{"order_id":"SO-1","status":"Packed"}'
            h = {"X-Shopify-Hmac-Sha256": mac(hashlib.sha256, "shop", body, "base64"), "X-Event": "ev-1",
                 "Content-Type": "application/json"}
            eq(post(e, url, body, dict(h, **{"X-Shopify-Hmac-Sha256": "AAAA"})).status, 401)
            eq(accepted(post(e, url, body, h)), tx)
            eq(post(e, url, body, h).json, {"accepted": True, "transaction": tx, "duplicate": True})
            rec.wait_for("POST", "/status")
            time.sleep(0.3)
            eq([r.json for r in rec.find("POST", "/status")], [{"order_id": "SO-1", "status": "Packed"}])
            eq(e.tx(tx)["runs"], 2)
