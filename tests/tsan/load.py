#!/usr/bin/env python3
"""make tsan: a short load against the ThreadSanitizer build (HOOKWORK_BIN):
fire-and-forget and synchronous webhooks, park and resume, a store that
fails for a moment (tests/fault/faultfs.so) and recovers, a graceful stop.
Fails when the engine's log holds a ThreadSanitizer report, or it does not
exit 0.  Prints "N passed, N failed" like the other suites."""

import json
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from lib import Engine, http_request, REPO  # noqa: E402

CYCLES = {
    "ff.lua": """local hw = require "hookwork"
return hw.cycle { name = "ff", steps = {
  hw.webhook { name = "in" },
  hw.step { name = "s", run = function(tx) tx.data.done = true end } } }
""",
    "sy.lua": """local hw = require "hookwork"
return hw.cycle { name = "sy", steps = {
  hw.webhook { name = "in" },
  hw.respond { body = function(tx) return { n = tx.data.n } end } } }
""",
    "pk.lua": """local hw = require "hookwork"
return hw.cycle { name = "pk", steps = {
  hw.webhook { name = "in", fields = { id = "string" } },
  hw.webhook { name = "st", match = "id" },
  hw.step { name = "s", run = function(tx) tx.data.resumed = true end } } }
""",
}


def main():
    fault = os.path.join(REPO, "tests", "fault", "faultfs.so")
    tmp = tempfile.mkdtemp(prefix="hookwork-tsan-")
    ctl = os.path.join(tmp, "ctl")
    with open(ctl, "w") as f:
        f.write("ok")
    e = Engine(CYCLES)
    e.env_extra.update({"LD_PRELOAD": fault, "HW_FAULT_CTL": ctl, "HW_FAULT_PATH": e.data_dir,
                        "TSAN_OPTIONS": "halt_on_error=0 exitcode=66"})
    failed = []
    counts = {}
    lock = threading.Lock()
    with e:
        e.start(wait=False)
        e.wait_healthy(timeout=60)
        urls = {c: e.hook_url(c, s) for c, s in (("ff", "in"), ("sy", "in"), ("pk", "in"))}
        st_url = e.hook_url("pk", "st")

        def client(k0):
            for k in range(k0, k0 + 150):
                for name, body in (("ff", {"n": k}), ("sy", {"n": k}), ("pk", {"id": "m%d" % k})):
                    try:
                        r = e.post(urls[name], json=body, timeout=30)
                        s = r.status
                    except Exception as ex:  # noqa: BLE001
                        s = "error %s" % ex
                    with lock:
                        counts[s] = counts.get(s, 0) + 1
                try:
                    r = e.post(st_url, json={"id": "m%d" % k}, timeout=30)
                    s = r.status
                except Exception as ex:  # noqa: BLE001
                    s = "error %s" % ex
                with lock:
                    counts[s] = counts.get(s, 0) + 1

        ts = [threading.Thread(target=client, args=(i * 1000,)) for i in range(4)]
        for t in ts:
            t.start()
        time.sleep(2)
        with open(ctl, "w") as f:
            f.write("eio")
        time.sleep(1)
        with open(ctl, "w") as f:
            f.write("ok")
        for t in ts:
            t.join(300)
        code = e.stop(timeout=60)
        log = e.log()
    reports = log.count("WARNING: ThreadSanitizer")
    print("tsan load: answers %s; exit %s; %d ThreadSanitizer reports" % (json.dumps(counts, sort_keys=True), code, reports))
    if reports:
        failed.append("ThreadSanitizer reports")
        print("\n".join(ln for ln in log.splitlines() if "ThreadSanitizer" in ln or ln.startswith("    #"))[:8000])
    if code != 0:
        failed.append("exit code %s" % code)
        print(log[-4000:])
    if not any(k == 202 for k in counts) or not any(k == 200 for k in counts):
        failed.append("no acknowledged requests")
    print("%d passed, %d failed" % (0 if failed else 1, 1 if failed else 0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
