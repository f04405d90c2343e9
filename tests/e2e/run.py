#!/usr/bin/env python3
"""Black-box test runner.

    python3 tests/e2e/run.py                     # every tests/e2e/test_*.py
    python3 tests/e2e/run.py test_sync.py        # named files (or module names)
    python3 tests/e2e/run.py -k keep_alive       # only tests whose name contains it

Prints `ok NAME` / `FAIL NAME: message` / `skip NAME: reason` per test and ends
with `N passed, N failed` (`, N skipped` when some were: a skip is neither).
Environment: HOOKWORK_BIN (binary, default ./hookwork), E2E_TIMEOUT (per test, 60 s),
HOOKWORK_TEST_STORE=postgres (every Engine on a fresh database of a throwaway
PostgreSQL, tests/e2e/pgserver.py; tests about SQLite files print `n/a on postgres`;
a module whose SAME_ON_EVERY_STORE names why the store plays no part is skipped there),
E2E_TIMES=1 (print each test's duration). A test whose engine log holds a sanitizer
report (ASan/UBSan/LSan) fails.
"""

import glob
import importlib
import os
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import lib  # noqa: E402


def main(argv):
    filters = []
    names = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-k":
            i += 1
            filters.append(argv[i])
        elif a.startswith("-k") and len(a) > 2:
            filters.append(a[2:])
        else:
            names.append(a)
        i += 1

    if names:
        mods = []
        for n in names:
            base = os.path.basename(n)
            if base.endswith(".py"):
                base = base[:-3]
            mods.append(base)
    else:
        mods = [os.path.basename(p)[:-3] for p in sorted(glob.glob(os.path.join(HERE, "test_*.py")))]

    passed = failed = skipped = 0
    if lib.on_postgres():
        import pgserver
        pgserver.install_signal_handlers()
        why = pgserver.available()
        if why:
            print("skip the whole suite on postgres: %s" % why, flush=True)
            print("0 passed, 0 failed, all skipped", flush=True)
            return 0
    for m in mods:
        try:
            importlib.import_module(m)
        except Exception:
            failed += 1
            print("FAIL %s: import error\n%s" % (m, traceback.format_exc()), flush=True)

    per_test = float(os.environ.get("E2E_TIMEOUT", "60"))
    for name, fn in list(lib.TESTS):
        if filters and not any(f in name for f in filters):
            continue
        first_engine = len(lib._ENGINES)
        result = {}
        same = getattr(sys.modules.get(name.split(".", 1)[0]), "SAME_ON_EVERY_STORE", None)
        if same and lib.on_postgres():
            skipped += 1
            print("skip %s: same on every store, run by the SQLite stage: %s" % (name, same), flush=True)
            continue

        def body():
            try:
                fn()
                result["ok"] = True
            except BaseException as ex:  # noqa: B902
                result["ex"] = ex
                result["tb"] = traceback.format_exc()

        t0 = time.time()
        th = threading.Thread(target=body, daemon=True, name=name)
        th.start()
        th.join(per_test)
        timed_out = th.is_alive()
        lib.cleanup_all()
        if timed_out:
            th.join(5)
        dt = time.time() - t0
        if result.get("ok") and not timed_out:
            for e in lib._ENGINES[first_engine:]:
                bad = e.sanitizer_errors()
                if bad:
                    result.pop("ok", None)
                    result["ex"] = AssertionError("sanitizer report in the engine log: %s" % "; ".join(bad[:3]))
                    result["tb"] = ""
                    break
        if isinstance(result.get("ex"), lib.Skip) and not timed_out:
            skipped += 1
            print("skip %s: %s" % (name, result["ex"]), flush=True)
            continue
        if result.get("ok") and not timed_out:
            passed += 1
            print("ok %s%s" % (name, " (%.1fs)" % dt if os.environ.get("E2E_TIMES") else ""), flush=True)
            continue
        failed += 1
        if timed_out:
            msg = "timed out after %ss" % per_test
        else:
            ex = result.get("ex")
            if isinstance(ex, AssertionError):
                tb = result["tb"].rstrip().splitlines()
                where = [ln.strip() for ln in tb if ln.strip().startswith("File ") and HERE in ln]
                msg = str(ex) + ("\n    at %s" % where[-1] if where else "")
            else:
                msg = result.get("tb", repr(ex)).rstrip()
        print("FAIL %s: %s" % (name, msg), flush=True)
        for e in lib._ENGINES[first_engine:]:
            tail = e.log_tail(30)
            lines = [ln for ln in tail.splitlines() if ln.strip()]
            if lines and lines[-1] not in msg:
                print("    --- engine log tail (%s) ---" % e.tmp)
                print("\n".join("    " + ln for ln in tail.splitlines()), flush=True)

    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""),
          flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
