#!/usr/bin/env python3
"""Browser tests of the web console: a real Chromium (Debian's `chromium`,
headless) driven by Debian's `chromium-driver` through `python3-selenium`,
against ./hookwork started by tests/e2e/lib.py.

    python3 tests/browser/run.py            # every scenario
    python3 tests/browser/run.py -k token   # scenarios whose name contains it

Prints `ok NAME` / `FAIL NAME: message` / `skip NAME: why` per scenario and
ends with `N passed, N failed`.  A scenario fails on any error in the
browser's console log, except the network errors it provokes on purpose
(an answer of 401 before the token is given, 400 for an invalid entry).
Environment: HOOKWORK_BIN (the binary), BROWSER_SHOTS (a directory for the
screenshots; default a temporary one, printed), BROWSER_KEEP=1 (keep it).
"""

import os
import sys

# python3-selenium is installed for Debian's own interpreter; another python3
# first on PATH (pyenv, venv) does not see it.
try:
    import selenium  # noqa: F401
except ImportError:
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3") \
            and not os.environ.get("BROWSER_REEXEC"):
        os.environ["BROWSER_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    print("FAIL setup: python3-selenium is not installed (make installs it)")
    print("0 passed, 1 failed")
    sys.exit(1)

import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))

import lib  # noqa: E402
import browser  # noqa: E402


def main(argv):
    filters = [a[2:] if a.startswith("-k") and len(a) > 2 else a for a in argv if a != "-k"]
    for exe in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not os.path.exists(exe):
            print("FAIL setup: %s is missing (make installs chromium and chromium-driver)" % exe)
            print("0 passed, 1 failed")
            return 1
    import scenarios  # noqa: F401  (registers the scenarios)

    shots = os.environ.get("BROWSER_SHOTS") or tempfile.mkdtemp(prefix="hookwork-shots-")
    os.makedirs(shots, exist_ok=True)
    browser.SHOTS = shots
    passed = failed = skipped = 0
    t_all = time.time()
    try:
        b = browser.Browser()
    except Exception:
        print("FAIL setup: cannot start Chromium\n%s" % traceback.format_exc())
        print("0 passed, 1 failed")
        return 1
    try:
        for name, fn in browser.SCENARIOS:
            if filters and not any(f in name for f in filters):
                continue
            result = {}
            b.reset()

            def body():
                try:
                    fn(b)
                    result["ok"] = True
                except browser.Skip as ex:
                    result["skip"] = str(ex)
                except BaseException as ex:  # noqa: B902
                    result["ex"] = ex
                    result["tb"] = traceback.format_exc()

            t0 = time.time()
            th = threading.Thread(target=body, daemon=True)
            th.start()
            th.join(60)
            if th.is_alive():
                result = {"ex": AssertionError("timed out after 60 s"), "tb": ""}
            if "ex" not in result and "skip" not in result:
                bad = b.console_errors()
                if bad:
                    result = {"ex": AssertionError("browser console errors: %s" % bad), "tb": ""}
            lib.cleanup_all()
            dt = time.time() - t0
            if "skip" in result:
                skipped += 1
                print("skip %s: %s" % (name, result["skip"]), flush=True)
            elif result.get("ok"):
                passed += 1
                print("ok %s (%.1fs)" % (name, dt), flush=True)
            else:
                failed += 1
                ex = result["ex"]
                msg = str(ex) if isinstance(ex, AssertionError) else result["tb"]
                where = [ln.strip() for ln in result.get("tb", "").splitlines() if "scenarios.py" in ln]
                print("FAIL %s: %s%s" % (name, msg, "\n    at " + where[-1] if where else ""), flush=True)
                path = b.shot("FAIL-" + name)
                if path:
                    print("    screenshot: %s" % path, flush=True)
                for e in lib._ENGINES[-2:]:
                    print("    --- engine log tail ---\n" + "\n".join("    " + ln for ln in e.log_tail(15).splitlines()))
    finally:
        b.quit()
    print("screenshots in %s (%.0fs in all)" % (shots, time.time() - t_all), flush=True)
    if not os.environ.get("BROWSER_SHOTS") and not os.environ.get("BROWSER_KEEP") and not failed:
        shutil.rmtree(shots, ignore_errors=True)
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
