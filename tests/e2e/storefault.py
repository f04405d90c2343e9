"""Make an engine's store fail on demand, on either backend (the durability,
door and ops tests use it; python3 standard library only).

    f = StoreFault(e)      # before e.start(): on SQLite it sets LD_PRELOAD
    e.start()
    f.set("eio")           # commits fail  -> 503 "store unavailable: ..."
    f.set("ok")            # commits work again

Modes:
  ok      nothing fails
  eio     SQLite: fsync/fdatasync fail with EIO (tests/fault/faultfs.so).
          PostgreSQL: every write fails, SQLSTATE 58030 io_error (a trigger
          on every table of the engine's database)
  enospc  SQLite: writes fail with ENOSPC. PostgreSQL: every write fails,
          SQLSTATE 53100 disk_full
  stall   SQLite: fsync hangs. PostgreSQL: a session holds EXCLUSIVE locks on
          every table (writes wait; reads go on), released by "ok"
  slow:MS PostgreSQL only (SQLite's tests have their own fsync shim): every
          transaction that writes waits MS milliseconds at its COMMIT (a
          deferred trigger that sleeps once per transaction): a slow disk
"""

import os
import re
import subprocess

import lib

FAULT_SO = os.path.join(lib.REPO, "tests", "fault", "faultfs.so")
MODES = ("ok", "eio", "enospc", "stall", "slow:MS")

_PG_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
_PG_SLOW_FN = """CREATE OR REPLACE FUNCTION hw_test_slow() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF current_setting('hw_test.slept', true) IS DISTINCT FROM 'y' THEN
    PERFORM set_config('hw_test.slept', 'y', true);  -- once per transaction
    PERFORM pg_sleep(TG_ARGV[0]::float8 / 1000);
  END IF;
  RETURN NULL;
END $f$;
"""
_PG_FAIL_FN = """CREATE OR REPLACE FUNCTION hw_test_fault() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  IF TG_ARGV[0] = 'enospc' THEN
    RAISE EXCEPTION 'injected by the test: could not extend file: No space left on device'
      USING ERRCODE = 'disk_full';
  END IF;
  RAISE EXCEPTION 'injected by the test: could not write: Input/output error' USING ERRCODE = 'io_error';
END $f$;
"""


class StoreFault:
    def __init__(self, e):
        self.e = e
        self.mode = "ok"
        self._lock_session = None
        self.ctl = os.path.join(e.tmp, "fault-ctl")
        self._write_ctl("ok")
        if not lib.on_postgres() and not e.store:
            if not os.path.exists(FAULT_SO):
                lib.fail("%s is missing: run make" % FAULT_SO)
            e.env_extra.update({"LD_PRELOAD": FAULT_SO, "HW_FAULT_CTL": self.ctl,
                                "HW_FAULT_PATH": e.data_dir,
                                "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                                ":verify_asan_link_order=0"})
        lib._RECORDERS.add(self)  # closed by the runner after the test, like a Recorder

    def _write_ctl(self, mode):
        with open(self.ctl + ".tmp", "w") as f:
            f.write(mode)
        os.rename(self.ctl + ".tmp", self.ctl)

    @property
    def pg(self):
        return bool(self.e.store)

    def set(self, mode):
        slow = re.match(r"slow:(\d+)$", mode)
        if mode not in MODES and not slow:
            raise ValueError("StoreFault mode %r: one of %s" % (mode, ", ".join(MODES)))
        if not self.pg:
            if slow:
                raise ValueError("slow:MS is for PostgreSQL (SQLite's tests use their fsync shim)")
            self._write_ctl(mode)
        elif self.mode == "stall" and mode in ("eio", "enospc"):
            # the stalled commits then fail: the triggers are made by the
            # session holding the locks, visible the moment it lets go
            self._pg_fail(mode, session=self._lock_session)
            self._lock_session = None
        else:
            self._pg_clear()
            if mode in ("eio", "enospc"):
                self._pg_fail(mode)
            elif mode == "stall":
                self._pg_stall()
            elif slow:
                self._pg_slow(int(slow.group(1)))
        self.mode = mode

    # -- PostgreSQL
    def _psql(self, sql):
        return lib.pg_server().psql(self.e.store, sql)

    def _tables(self):
        return [r[0] for r in lib.pg_server().query(self.e.store, _PG_TABLES)]

    def _pg_fail(self, mode, session=None):
        stmts = [_PG_FAIL_FN]
        for t in self._tables():
            stmts.append('CREATE TRIGGER hw_test_fault BEFORE INSERT OR UPDATE OR DELETE ON "%s" '
                         "FOR EACH STATEMENT EXECUTE FUNCTION hw_test_fault('%s');" % (t, mode))
        if session is not None:
            session.stdin.write("\n".join(stmts) + "\nCOMMIT;\nSELECT 'failing';\n")
            session.stdin.close()
            out = session.stdout.read()
            session.wait(30)
            if "failing" not in out:
                raise AssertionError("could not turn the stall into failures: %r" % out[-500:])
            return
        # One table at a time, each in its own transaction: holding one
        # table's lock while waiting for the next could deadlock with a
        # commit of the engine that takes them in another order.
        self._psql("\n".join(stmts))

    def _pg_slow(self, ms):
        stmts = [_PG_SLOW_FN]
        for t in self._tables():
            stmts.append('CREATE CONSTRAINT TRIGGER hw_test_slow AFTER INSERT OR UPDATE OR DELETE ON "%s" '
                         "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hw_test_slow('%d');"
                         % (t, ms))
        self._psql("\n".join(stmts))

    def _pg_stall(self):
        srv = lib.pg_server()
        tables = ", ".join('"%s"' % t for t in self._tables())
        line = ""
        for _attempt in range(10):  # the engine's commit may deadlock with us; we then try again
            p = subprocess.Popen(srv._psql_args(self.e.store), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env=srv._env())
            p.stdin.write("BEGIN;\nLOCK TABLE %s IN EXCLUSIVE MODE;\nSELECT 'locked';\n" % tables)
            p.stdin.flush()
            line = p.stdout.readline().strip()
            if line == "locked":
                self._lock_session = p
                return
            p.kill()
            p.wait(5)
        raise AssertionError("could not lock the tables to stall the store: %r" % line)

    def _pg_clear(self):
        p, self._lock_session = self._lock_session, None
        if p is not None:
            try:
                p.stdin.write("ROLLBACK;\n")
                p.stdin.close()
                p.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
        if self.mode in ("eio", "enospc"):
            stmts = ['DROP TRIGGER IF EXISTS hw_test_fault ON "%s";' % t for t in self._tables()]
            self._psql("\n".join(stmts))
        elif self.mode.startswith("slow:"):
            stmts = ['DROP TRIGGER IF EXISTS hw_test_slow ON "%s";' % t for t in self._tables()]
            self._psql("\n".join(stmts))

    def close(self):
        lib._RECORDERS.discard(self)
        if self.pg and self.mode != "ok":
            try:
                self._pg_clear()
            except Exception:
                pass
            self.mode = "ok"
