"""A throwaway PostgreSQL for the tests (python3 standard library only).

    import pgserver
    srv = pgserver.shared()            # started once per process, on first use
    url = srv.new_database()           # postgres://postgres@127.0.0.1:PORT/hw_1
    rows = srv.query(url, "SELECT 1")  # [(1,)]

The server comes from Debian's packages (/usr/lib/postgresql/*/bin, the newest
version present; `make` installs `postgresql`). It lives in a temporary
directory owned by the unprivileged `postgres` user when the tests run as root
(initdb and postgres refuse root), listens on a free loopback port and on a
unix socket in that directory, and runs with fsync on: durability is what the
tests check. Authentication is `trust`, on loopback only.

It is stopped and its directory removed at exit (atexit, SIGTERM/SIGINT/SIGHUP),
also when a test fails. Should the test process itself be killed -9, a small
watchdog process (it waits for a pipe from us to close) ends the postmaster
and removes the directory; and each start removes directories left by test
processes that no longer exist.

available() says why a server cannot be started (None when it can): tests
print it as their skip reason.
"""

import atexit
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PREFIX = "hookwork-pg-"
SUPERUSER = "postgres"
BIN_GLOB = os.environ.get("HOOKWORK_PG_BIN_GLOB", "/usr/lib/postgresql/*/bin")
NEEDED = ("initdb", "postgres", "psql", "pg_ctl")


def _version_key(path):
    m = re.search(r"/(\d+)(?:\.(\d+))?/bin$", path)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (0, 0)


def find_bindir():
    """The newest Debian PostgreSQL bin directory holding every binary we need, or None."""
    dirs = sorted(glob.glob(BIN_GLOB), key=_version_key, reverse=True)
    for d in dirs:
        if all(os.access(os.path.join(d, b), os.X_OK) for b in NEEDED):
            return d
    return None


def _pg_user():
    """(uid, gid) to run the server as: ourselves unless root; then `postgres`."""
    if os.geteuid() != 0:
        return None
    import pwd
    try:
        pw = pwd.getpwnam(os.environ.get("HOOKWORK_PG_OS_USER", "postgres"))
    except KeyError:
        return False
    return pw.pw_uid, pw.pw_gid


def available():
    """None when a server can be started here, else the reason it cannot."""
    if find_bindir() is None:
        return ("no PostgreSQL server binaries (%s with %s); `make` installs Debian's "
                "postgresql package" % (BIN_GLOB, ", ".join(NEEDED)))
    if _pg_user() is False:
        return "running as root and there is no unprivileged `postgres` user to run the server as"
    return None


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmtree(d):
    # a backend that outlived a killed postmaster may still be writing
    for _ in range(50):
        shutil.rmtree(d, ignore_errors=True)
        if not os.path.exists(d):
            return
        time.sleep(0.1)


def sweep_stale(tmpdir=None):
    """Remove server directories of test processes that died without cleaning up
    (their owner pid is in the name: hookwork-pg-PID-xxxx). Returns what was removed."""
    removed = []
    base = tmpdir or tempfile.gettempdir()
    for d in glob.glob(os.path.join(base, PREFIX + "*")):
        m = re.match(re.escape(PREFIX) + r"(\d+)-", os.path.basename(d))
        if not m or _pid_alive(int(m.group(1))):
            continue
        pm = os.path.join(d, "data", "postmaster.pid")
        try:
            with open(pm) as f:
                ppid = int(f.readline().strip() or 0)
            if ppid and _pid_alive(ppid):
                os.kill(ppid, signal.SIGQUIT)  # a postmaster outliving its owner
                for _ in range(100):
                    if not _pid_alive(ppid):
                        break
                    time.sleep(0.05)
        except (OSError, ValueError):
            pass
        _rmtree(d)
        removed.append(d)
    return removed


_WATCHDOG = r"""
import os, shutil, signal, sys, time
fd, pid, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
while True:
    try:
        if not os.read(fd, 1):
            break
    except InterruptedError:
        continue
    except OSError:
        break
for sig, wait in ((signal.SIGQUIT, 15.0), (signal.SIGKILL, 5.0)):
    try:
        os.kill(pid, sig)
    except OSError:
        break
    end = time.time() + wait
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.05)
    else:
        continue
    break
for _ in range(50):
    shutil.rmtree(d, ignore_errors=True)
    if not os.path.exists(d):
        break
    time.sleep(0.1)
"""


class PgError(Exception):
    pass


class PgServer:
    """One PostgreSQL cluster in a temporary directory."""

    def __init__(self, bindir=None, tmpdir=None, settings=None):
        self.bindir = bindir or find_bindir()
        if self.bindir is None:
            raise PgError(available())
        self.base_tmp = tmpdir
        self.settings = dict(settings or {})
        self.dir = None
        self.port = None
        self.proc = None
        self._ids = 0
        self._lock = threading.Lock()
        self._watch_fd = None

    # -- paths
    def _bin(self, name):
        return os.path.join(self.bindir, name)

    @property
    def data_dir(self):
        return os.path.join(self.dir, "data")

    @property
    def sock_dir(self):
        return os.path.join(self.dir, "sock")

    @property
    def log_path(self):
        return os.path.join(self.dir, "postgres.log")

    def url(self, db="postgres"):
        return "postgres://%s@127.0.0.1:%d/%s" % (SUPERUSER, self.port, db)

    # -- running things as the server's user
    def _demote(self):
        ids = _pg_user()

        def fn():
            os.setsid()  # not in the tests' process group: a Ctrl-C reaches us, we stop it
            if ids:
                os.setgroups([])
                os.setgid(ids[1])
                os.setuid(ids[0])
        return fn

    def _run_as(self, args, timeout=120):
        r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout, preexec_fn=self._demote(), cwd=self.dir,
                           env=self._env())
        if r.returncode != 0:
            raise PgError("%s exited %s:\n%s" % (os.path.basename(args[0]), r.returncode, r.stdout[-3000:]))
        return r.stdout

    def _env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        return env

    # -- lifetime
    def start(self, timeout=60):
        if self.proc is not None:
            return self
        sweep_stale(self.base_tmp)
        self.dir = tempfile.mkdtemp(prefix="%s%d-" % (PREFIX, os.getpid()), dir=self.base_tmp)
        os.chmod(self.dir, 0o755)
        os.makedirs(self.sock_dir)
        ids = _pg_user()
        if ids:
            for p in (self.dir, self.sock_dir):
                os.chown(p, ids[0], ids[1])
        self._run_as([self._bin("initdb"), "-D", self.data_dir, "-U", SUPERUSER, "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync"])
        # Settings for a test server: fsync on (what we test), a small footprint,
        # enough connections for three nodes per test and their pools.
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "'%s'" % self.sock_dir,
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "max_connections": "300",
            "shared_buffers": "64MB",
            "log_min_messages": "warning",
            "log_min_error_statement": "panic",
            "logging_collector": "off",
        }
        conf.update({k: str(v) for k, v in self.settings.items()})
        with open(os.path.join(self.data_dir, "postgresql.auto.conf"), "a") as f:
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))
        last = None
        for _attempt in range(5):  # the port may be taken between choosing and binding
            self.port = _free_port()
            try:
                self._spawn(timeout)
                break
            except PgError as ex:
                last = ex
                if "already in use" not in str(ex) and "could not create" not in str(ex):
                    self.stop()
                    raise
        else:
            self.stop()
            raise last
        _register(self)
        return self

    def _spawn(self, timeout):
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [self._bin("postgres"), "-D", self.data_dir, "-p", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd=self.dir,
                env=self._env(), preexec_fn=self._demote())
        except OSError as ex:
            raise PgError("cannot start postgres: %s" % ex)
        finally:
            logf.close()
        self._start_watchdog()
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise PgError("postgres exited %s during start:\n%s" % (code, self.log_tail()))
            if self._accepts():
                return
            if time.time() >= deadline:
                raise PgError("postgres not accepting after %ss:\n%s" % (timeout, self.log_tail()))
            time.sleep(0.05)

    def _start_watchdog(self):
        """A process that outlives us only to clean up: it blocks reading a pipe
        whose only write end we hold, so the read returns when we are gone,
        however we died (kill -9 included); it then ends the postmaster and
        removes the directory. A normal stop() has done both already."""
        r, w = os.pipe()  # both non-inheritable; r is passed explicitly
        try:
            subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(r), str(self.proc.pid), self.dir],
                             pass_fds=(r,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(r)
        self._watch_fd = w

    def _accepts(self):
        try:
            r = subprocess.run(self._psql_args(self.url()) + ["-c", "SELECT 1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=10, env=self._env())
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0 and r.stdout.strip() == "1"

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except (OSError, TypeError):
            return ""

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Stop the server and remove its directory. Immediate shutdown: its
        data is thrown away, so there is no checkpoint to wait for (a fast
        shutdown's can take long on a loaded machine)."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            for sig, wait in ((signal.SIGQUIT, 15), (signal.SIGKILL, 5)):
                try:
                    p.send_signal(sig)
                    p.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except OSError:
                    break
        if self.dir:
            _rmtree(self.dir)
            self.dir = None
        if self._watch_fd is not None:
            os.close(self._watch_fd)
            self._watch_fd = None
        _unregister(self)

    # -- databases
    def new_database(self, prefix="hw_"):
        """Create a fresh, empty database; returns its URL."""
        with self._lock:
            self._ids += 1
            name = "%s%d" % (prefix, self._ids)
        self.psql(self.url(), 'CREATE DATABASE "%s"' % name)
        return self.url(name)

    def drop_database(self, url):
        """Drop a database (its connections are ended first)."""
        db = url.rsplit("/", 1)[-1].split("?")[0]
        self.psql(self.url(), 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db.replace('"', '""'))

    def _psql_args(self, url):
        return [self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url]

    def psql(self, url, sql, timeout=60):
        """Run SQL text through psql; returns its unaligned, tuples-only output."""
        r = subprocess.run(self._psql_args(url), input=sql, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout, env=self._env())
        if r.returncode != 0:
            raise PgError("psql on %s: %s" % (url, (r.stderr or r.stdout).strip()))
        return r.stdout

    def query(self, url, sql, args=()):
        """Rows of one SELECT as a list of tuples with JSON types (int, float, str, None,
        bool; json/jsonb columns as parsed values). `?` in sql are replaced by args."""
        inner = bind(sql, args).rstrip().rstrip(";")
        out = self.psql(url, _rows_sql(inner))
        return [tuple(r) for r in json.loads(out)]


def _rows_sql(inner):
    # Each row as a JSON array in column order: row_to_json keeps the order,
    # then its values are taken out in that order.
    return ("SELECT coalesce(json_agg((SELECT json_agg(v.value ORDER BY v.ordinality) "
            "FROM json_each(row_to_json(q)) WITH ORDINALITY v)), '[]') FROM (%s) q" % inner)


def literal(v):
    """SQL literal for a Python value (standard_conforming_strings is on)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, bytes):
        return "'\\x%s'::bytea" % v.hex()
    s = str(v)
    if "\x00" in s:
        raise ValueError("a NUL byte cannot be sent to PostgreSQL in text")
    return "'" + s.replace("'", "''") + "'"


def bind(sql, args=()):
    """Replace each `?` outside quotes in sql by the literal of the next arg."""
    args = list(args)
    out = []
    i = 0
    quote = None
    for ch in sql:
        if quote:
            out.append(ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            if i >= len(args):
                raise ValueError("more ? than arguments in %r" % sql)
            out.append(literal(args[i]))
            i += 1
        else:
            out.append(ch)
    if i != len(args):
        raise ValueError("%d arguments for %d ? in %r" % (len(args), i, sql))
    return "".join(out)


# ---------------------------------------------------------------- process-wide

_SERVERS = set()
_SHARED = None
_SHARED_LOCK = threading.Lock()
_HANDLERS = False


def _register(srv):
    global _HANDLERS
    _SERVERS.add(srv)
    if _HANDLERS:
        return
    _HANDLERS = True
    atexit.register(stop_all)
    if threading.current_thread() is threading.main_thread():
        _install_signals()
    else:
        # signal.signal works only in the main thread; the runner's tests run in
        # worker threads, so the handlers are put in place from there by
        # install_signal_handlers() (run.py calls it), and by a later start.
        pass


def _install_signals():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        prev = signal.getsignal(sig)

        def handler(signum, frame, prev=prev):
            stop_all()
            if callable(prev):
                prev(signum, frame)
            else:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):
            pass


def install_signal_handlers():
    """From the main thread: stop every server on SIGTERM/SIGINT/SIGHUP, then let
    the signal do what it did before (KeyboardInterrupt for SIGINT)."""
    global _HANDLERS
    if threading.current_thread() is threading.main_thread():
        _install_signals()
        if not _HANDLERS:
            _HANDLERS = True
            atexit.register(stop_all)


def _unregister(srv):
    _SERVERS.discard(srv)


def stop_all():
    global _SHARED
    for s in list(_SERVERS):
        try:
            s.stop()
        except Exception:
            pass
    _SHARED = None


def shared():
    """The process's one server, started on first use (PgError when it cannot start)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or not _SHARED.running():
            why = available()
            if why:
                raise PgError(why)
            _SHARED = PgServer().start()
        return _SHARED
