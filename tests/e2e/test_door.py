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
