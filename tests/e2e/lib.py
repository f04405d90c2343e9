"""Black-box test framework for hookwork (python3 standard library only).

Tests start the real binary on free ports and talk HTTP to it.

    from lib import test, Engine, Recorder, eq

    @test
    def accepts_a_post():
        with Engine({"a.lua": CYCLE}) as e:
            e.start()
            r = e.post(e.hook_url("a", "in"), json={"x": 1})
            eq(r.status, 202)

The API of this module is shared by several test files; keep it stable.
"""

import atexit
import http.client
import http.server
import json as _json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def hookwork_bin():
    return os.environ.get("HOOKWORK_BIN") or os.path.join(REPO, "hookwork")


# ---------------------------------------------------------------- store backend
# HOOKWORK_TEST_STORE=postgres runs every Engine on a fresh database of a
# throwaway PostgreSQL (tests/e2e/pgserver.py) instead of SQLite in --data.

STORE = os.environ.get("HOOKWORK_TEST_STORE", "sqlite") or "sqlite"
if STORE not in ("sqlite", "postgres"):
    raise SystemExit("HOOKWORK_TEST_STORE=%r: expected sqlite or postgres" % STORE)


def on_postgres():
    return STORE == "postgres"


class Skip(Exception):
    """Raised by skip(): the runner prints `skip NAME: REASON`, counted neither
    as passed nor as failed."""


def skip(reason):
    raise Skip(reason)


def not_on_postgres(reason):
    """A test about SQLite files (or another property of the embedded store) calls
    this first: on the PostgreSQL backend it is reported as not applicable."""
    if on_postgres():
        raise Skip("n/a on postgres: " + reason)


def pg_server():
    """The throwaway PostgreSQL of this test process (started on first use);
    skips the test with the reason when no server can run here."""
    import pgserver
    why = pgserver.available()
    if why:
        skip(why)
    return pgserver.shared()


def pg_database():
    """URL of a fresh database on the test PostgreSQL (for Engine(store=URL):
    several engines on one database). Tests that need PostgreSQL run in the
    postgres stage (HOOKWORK_TEST_STORE=postgres) and are skipped, with that
    reason, in the SQLite one."""
    if not on_postgres():
        skip("needs PostgreSQL: runs with HOOKWORK_TEST_STORE=postgres (make test's postgres stage)")
    return pg_server().new_database()


# ---------------------------------------------------------------- registry

TESTS = []          # list of (full_name, func)
_ENGINES = []       # every Engine ever created (runner reads logs of failing tests)
_LIVE = set()       # engines with a running process
_RECORDERS = set()  # open recorders


def test(arg=None):
    """Register a test function. Use as @test or @test("name")."""
    def reg(fn, name=None):
        mod = fn.__module__.rsplit(".", 1)[-1]
        full = "%s.%s" % (mod, name or fn.__name__)
        TESTS.append((full, fn))
        return fn
    if callable(arg):
        return reg(arg)
    return lambda fn: reg(fn, arg)


def cleanup_all():
    """Kill every live engine and close every recorder (runner calls it after each test)."""
    for e in list(_LIVE):
        try:
            e.close()
        except Exception:
            pass
    for r in list(_RECORDERS):
        try:
            r.close()
        except Exception:
            pass


def _atexit_kill():
    for e in list(_LIVE):
        try:
            if e.proc and e.proc.poll() is None:
                e.proc.kill()
                e.proc.wait(5)
        except Exception:
            pass


atexit.register(_atexit_kill)


# ---------------------------------------------------------------- assertions

def _short(v, n=600):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def eq(a, b, msg=""):
    if a != b:
        raise AssertionError("%s%s != %s" % (msg + ": " if msg else "", _short(a), _short(b)))


def ne(a, b, msg=""):
    if a == b:
        raise AssertionError("%sexpected a value other than %s" % (msg + ": " if msg else "", _short(a)))


def ok(cond, msg="", *values):
    if not cond:
        raise AssertionError((msg or "condition false") + ("" if not values else ": " + ", ".join(_short(v) for v in values)))


def contains(haystack, needle, msg=""):
    if haystack is None or needle not in haystack:
        raise AssertionError("%s%s not in %s" % (msg + ": " if msg else "", _short(needle), _short(haystack)))


def fail(msg):
    raise AssertionError(msg)


def wait_until(fn, timeout=10, interval=0.05, msg="condition"):
    """Poll fn() until it returns a truthy value; return it. AssertionError on timeout."""
    deadline = time.time() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except AssertionError:
            if time.time() >= deadline:
                raise
        if time.time() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s (last: %s)" % (timeout, msg, _short(last)))
        time.sleep(interval)


# ---------------------------------------------------------------- helpers

_GIVEN_PORTS = set()


def free_port():
    """A port free now and not handed out before in this process: the kernel
    may give the same ephemeral port to two binds in a row once the first
    socket is closed, and an engine's --listen and --admin must differ."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port
    raise AssertionError("no free port left that was not given out before")


class Response:
    def __init__(self, status, headers, body, reason=""):
        self.status = status
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.body = body or b""
        self.reason = reason

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    @property
    def json(self):
        try:
            return _json.loads(self.body.decode("utf-8"))
        except Exception:
            return None

    def __repr__(self):
        return "<Response %s %s %s>" % (self.status, _short(self.headers, 200), _short(self.body, 300))


def http_request(host, port, method, path, body=None, headers=None, timeout=10, source_ip=None):
    """One request on a fresh connection; returns Response."""
    kw = {"timeout": timeout}
    if source_ip:
        kw["source_address"] = (source_ip, 0)
    conn = http.client.HTTPConnection(host, port, **kw)
    try:
        hdrs = dict(headers or {})
        if body is not None and not any(k.lower() == "content-length" for k in hdrs) \
                and not any(k.lower() == "transfer-encoding" for k in hdrs):
            hdrs["Content-Length"] = str(len(body))
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data, r.reason)
    finally:
        conn.close()


def _encode_body(json, body, headers):
    headers = dict(headers or {})
    if json is not None:
        body = _json.dumps(json).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    elif isinstance(body, str):
        body = body.encode()
    return body, headers


def run_cli(args, cwd=None, env=None, timeout=20):
    """Run the hookwork binary with args; returns subprocess.CompletedProcess (text)."""
    full_env = dict(os.environ)
    full_env.pop("HOOKWORK_ADMIN_TOKEN", None)
    full_env.update(env or {})
    try:
        return subprocess.run([hookwork_bin()] + list(args), cwd=cwd, env=full_env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)
    except OSError as ex:
        raise AssertionError("cannot run %s: %s" % (hookwork_bin(), ex))


# ---------------------------------------------------------------- engine

class Engine:
    def __init__(self, files=None, cycles_dir=None, env=None, args=[], data_dir=None, store=None):
        """store: a postgres:// URL to run on (several Engines may share one);
        under HOOKWORK_TEST_STORE=postgres each Engine gets a fresh database on
        its first start, kept across restarts."""
        self.tmp = tempfile.mkdtemp(prefix="hookwork-e2e-")
        self.store = store
        self._own_store = False  # a database made for this Engine, dropped by close()
        self.cycles_dir = cycles_dir or os.path.join(self.tmp, "cycles")
        self.data_dir = data_dir or os.path.join(self.tmp, "var")
        os.makedirs(self.cycles_dir, exist_ok=True)
        self.env_extra = dict(env or {})
        self.args = list(args)
        self.port = free_port()
        self.admin_port = free_port()
        self.log_path = os.path.join(self.tmp, "engine.log")
        self.proc = None
        self._final_log = None
        self._closed = False
        for name, text in (files or {}).items():
            self.write(name, text)
        _ENGINES.append(self)

    # -- addresses
    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def admin_url(self):
        return "http://127.0.0.1:%d" % self.admin_port

    @property
    def token(self):
        return self.env_extra.get("HOOKWORK_ADMIN_TOKEN")

    def command(self):
        where = ["--store", self.store] if self.store else ["--data", self.data_dir]
        return [hookwork_bin(), "run", "--cycles", self.cycles_dir] + where + [
                "--listen", "127.0.0.1:%d" % self.port,
                "--admin", "127.0.0.1:%d" % self.admin_port] + self.args

    # -- process control
    def start(self, wait=True):
        if self.proc and self.proc.poll() is None:
            raise AssertionError("engine already running")
        if self.store is None and on_postgres():
            self.store = pg_database()
            self._own_store = True
        env = dict(os.environ)
        env.pop("HOOKWORK_ADMIN_TOKEN", None)
        env.pop("HOOKWORK_READ_TIMEOUT", None)
        env.update(self.env_extra)
        cmd = self.command()
        logf = open(self.log_path, "ab")
        logf.write(("--- e2e: start %s\n" % " ".join(cmd)).encode())
        logf.flush()
        try:
            self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf)
        except OSError as ex:
            logf.close()
            raise AssertionError("cannot start %s: %s" % (cmd[0], ex))
        logf.close()
        _LIVE.add(self)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=10):
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("engine exited with %s during start; log tail:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                r = http_request("127.0.0.1", self.admin_port, "GET", "/healthz", timeout=2)
                if r.status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.time() >= deadline:
                raise AssertionError("engine not healthy after %ss; log tail:\n%s" % (timeout, self.log_tail()))
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Send sig and wait for exit; returns the exit code (negative: killed by a signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                _LIVE.discard(self)
                raise AssertionError("engine did not exit within %ss of signal %s" % (timeout, sig))
        _LIVE.discard(self)
        return self.proc.returncode

    def kill(self):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        _LIVE.discard(self)
        return self.proc.returncode

    def restart(self):
        code = self.stop()
        self.start()
        return code

    # -- logs
    def log(self):
        if self._final_log is not None:
            return self._final_log
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "SUMMARY: AddressSanitizer", "SUMMARY: LeakSanitizer",
                       "SUMMARY: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer")

    def sanitizer_errors(self):
        """Lines of the log where a sanitizer reported something (ASan/UBSan/LSan builds)."""
        return [ln for ln in self.log().splitlines() if any(m in ln for m in self.SANITIZER_MARKS)]

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    # -- cycle files
    def write(self, name, text, rename=False):
        path = os.path.join(self.cycles_dir, name)
        if rename:
            tmp = os.path.join(self.cycles_dir, ".%s.tmp%d" % (name, os.getpid()))
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, path)
        else:
            with open(path, "w") as f:
                f.write(text)
        return path

    def remove(self, name):
        os.remove(os.path.join(self.cycles_dir, name))

    # -- HTTP
    def post(self, url, json=None, body=None, headers=None, method="POST", source_ip=None, timeout=10):
        """Request to a webhook: url is a full URL or a path on the listen port."""
        if url.startswith("http://") or url.startswith("https://"):
            u = urllib.parse.urlsplit(url)
            host, port = u.hostname, u.port or 80
            path = u.path + ("?" + u.query if u.query else "")
        else:
            host, port, path = "127.0.0.1", self.port, url
        body, headers = _encode_body(json, body, headers)
        return http_request(host, port, method, path or "/", body=body, headers=headers,
                            timeout=timeout, source_ip=source_ip)

    def admin(self, method, path, json=None, token=None, headers=None, timeout=10):
        """Request to the admin API. token None: the Engine's HOOKWORK_ADMIN_TOKEN if any;
        token "": no Authorization header."""
        body, hdrs = _encode_body(json, None, headers)
        if token is None:
            token = self.token
        if token:
            hdrs["Authorization"] = "Bearer " + token
        return http_request("127.0.0.1", self.admin_port, method, path, body=body, headers=hdrs,
                            timeout=timeout)

    def _admin_json(self, method, path, expect=200):
        r = self.admin(method, path)
        if r.status != expect:
            raise AssertionError("%s %s -> %s %s" % (method, path, r.status, _short(r.body)))
        return r.json

    def cycles(self):
        return self._admin_json("GET", "/api/cycles")

    def cycle(self, name):
        for c in self.cycles():
            if c.get("name") == name:
                return c
        raise AssertionError("cycle %r not in /api/cycles" % name)

    def hook_url(self, cycle, step, timeout=3):
        deadline = time.time() + timeout
        last = None
        while True:
            last = self.cycles()
            for c in last or []:
                if c.get("name") == cycle:
                    for w in c.get("webhooks") or []:
                        if w.get("step") == step and w.get("url"):
                            return w["url"]
            if time.time() >= deadline:
                raise AssertionError("no webhook %r of cycle %r in /api/cycles: %s" % (step, cycle, _short(last, 1500)))
            time.sleep(0.1)

    def hook_path(self, cycle, step):
        return urllib.parse.urlsplit(self.hook_url(cycle, step)).path

    def start_cycle(self, name):
        r = self.admin("POST", "/api/cycles/%s/start" % urllib.parse.quote(name))
        if r.status // 100 != 2:
            raise AssertionError("start %s -> %s %s" % (name, r.status, _short(r.body)))
        return r

    def stop_cycle(self, name):
        r = self.admin("POST", "/api/cycles/%s/stop" % urllib.parse.quote(name))
        if r.status // 100 != 2:
            raise AssertionError("stop %s -> %s %s" % (name, r.status, _short(r.body)))
        return r

    def _get_tx(self, id):
        r = self.admin("GET", "/api/transactions/%s" % urllib.parse.quote(str(id)))
        if r.status == 404:
            return None
        if r.status != 200:
            raise AssertionError("GET /api/transactions/%s -> %s %s" % (id, r.status, _short(r.body)))
        return r.json

    def tx(self, id):
        t = self._get_tx(id)
        if t is None:
            raise AssertionError("transaction %s not found" % id)
        return t

    def wait_tx(self, id, state=None, timeout=10):
        if isinstance(state, str):
            states = {state}
        else:
            states = set(state) if state else None
        deadline = time.time() + timeout
        last = None
        while True:
            try:
                last = self._get_tx(id)
            except (OSError, http.client.HTTPException):
                last = None
            if last is not None and (states is None or last.get("state") in states):
                return last
            if time.time() >= deadline:
                raise AssertionError("transaction %s not in state %s after %ss; last: %s"
                                     % (id, sorted(states) if states else "(any)", timeout, _short(last, 2000)))
            time.sleep(0.05)

    def db_rows(self, sql, args=(), pg=None):
        """Rows of a query on the engine's store, read directly: SQLite's
        DATA/hookwork.db, or the engine's PostgreSQL database through psql
        (`pg`: the query in PostgreSQL's dialect where it differs; `?` marks
        arguments in both). A list of tuples."""
        if self.store:
            return pg_server().query(self.store, pg or sql, args)
        import sqlite3
        con = sqlite3.connect(os.path.join(self.data_dir, "hookwork.db"), timeout=10)
        try:
            return [tuple(r) for r in con.execute(sql, tuple(args)).fetchall()]
        finally:
            con.close()

    def txs(self, **filters):
        q = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        return self._admin_json("GET", "/api/transactions" + ("?" + q if q else ""))

    def metrics(self, raw=False):
        """/metrics as text. On PostgreSQL every series carries this node's
        name as its last label (`node="..."`); it is taken out unless raw, so
        the single-node tests read the same lines on both stores."""
        r = self.admin("GET", "/metrics")
        if r.status != 200:
            raise AssertionError("GET /metrics -> %s %s" % (r.status, _short(r.body)))
        if raw or not self.store:
            return r.text
        return re.sub(r'\{node="(?:[^"\\]|\\.)*"\}|,node="(?:[^"\\]|\\.)*"(?=\})', "", r.text)

    # -- lifetime
    def close(self):
        if self._closed:
            return
        try:
            if self.running():
                try:
                    self.stop(timeout=10)
                except AssertionError:
                    pass
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                try:
                    self.proc.wait(5)
                except Exception:
                    pass
            _LIVE.discard(self)
            self._final_log = self.log()
            self._closed = True
            shutil.rmtree(self.tmp, ignore_errors=True)
            if self._own_store:
                try:
                    pg_server().drop_database(self.store)
                except Exception:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- recorder

class Record(dict):
    """A recorded request: dict with attribute access
    (method, path, query, headers, body, json, time)."""

    def __getattr__(self, k):
        try:
            return self[k]
        except KeyError:
            raise AttributeError(k)


def _read_chunked(rfile):
    out = b""
    while True:
        line = rfile.readline()
        if not line:
            break
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while True:
                t = rfile.readline()
                if not t or t in (b"\r\n", b"\n"):
                    break
            break
        out += rfile.read(size)
        rfile.readline()
    return out


class Recorder:
    """A local recording HTTP server standing in for remote systems."""

    def __init__(self):
        self.requests = []
        self._routes = {}
        self._counts = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                te = (self.headers.get("Transfer-Encoding") or "").lower()
                if "chunked" in te:
                    body = _read_chunked(self.rfile)
                else:
                    n = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(n) if n else b""
                u = urllib.parse.urlsplit(self.path)
                query = {k: v for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True)}
                try:
                    js = _json.loads(body.decode("utf-8")) if body else None
                except Exception:
                    js = None
                record = Record(method=self.command, path=u.path, query=query,
                                headers={k.lower(): v for k, v in self.headers.items()},
                                body=body, json=js, time=time.time(), raw_path=self.path)
                answer = rec._answer_for(self.command, u.path)
                with rec._cond:
                    rec.requests.append(record)
                    rec._cond.notify_all()
                delay = answer.get("delay") or 0
                if delay:
                    time.sleep(delay)
                status = answer.get("status", 200)
                hdrs = dict(answer.get("headers") or {})
                if answer.get("json") is not None:
                    out = _json.dumps(answer["json"]).encode()
                    hdrs.setdefault("Content-Type", "application/json")
                else:
                    out = answer.get("body", b"")
                    if isinstance(out, str):
                        out = out.encode()
                try:
                    self.send_response(status)
                    for k, v in hdrs.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(out)
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def handle_error(self, request, client_address):
                pass  # peers (a killed engine) may reset connections; that is not a test failure

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        _RECORDERS.add(self)

    def route(self, method, path, status=200, json=None, body=b"", headers=None, delay=0.0, sequence=None):
        if sequence:
            answers = [dict(a) for a in sequence]
        else:
            answers = [dict(status=status, json=json, body=body, headers=headers, delay=delay)]
        with self._lock:
            self._routes[(method.upper(), path)] = answers
            self._counts[(method.upper(), path)] = 0
        return self

    def _answer_for(self, method, path):
        key = (method.upper(), path)
        with self._lock:
            answers = self._routes.get(key)
            if not answers:
                return {"status": 200, "json": {"ok": True}}
            i = self._counts[key]
            self._counts[key] = i + 1
            return answers[min(i, len(answers) - 1)]

    def find(self, method, path):
        with self._lock:
            return [r for r in self.requests if r["method"] == method.upper() and r["path"] == path]

    def wait_for(self, method, path, count=1, timeout=10):
        deadline = time.time() + timeout
        with self._cond:
            while True:
                found = [r for r in self.requests if r["method"] == method.upper() and r["path"] == path]
                if len(found) >= count:
                    return found
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("recorder: %d of %d %s %s within %ss; seen: %s" % (
                        len(found), count, method, path, timeout,
                        _short([(r["method"], r["path"]) for r in self.requests], 800)))
                self._cond.wait(min(left, 0.1))

    def close(self):
        if self._server is None:
            return
        try:
            self._server.shutdown()
            self._server.server_close()
        finally:
            self._server = None
            _RECORDERS.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ---------------------------------------------------------------- raw sockets

def parse_responses(data, head_only_statuses=(204, 304)):
    """Parse as many complete HTTP/1.x responses from data as possible.
    Returns (list of Response, leftover bytes). A response with neither
    Content-Length nor chunked encoding takes the rest of data as its body."""
    out = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out, data
        head = data[:end].decode("latin-1")
        lines = head.split("\r\n")
        m = re.match(r"HTTP/\d\.\d (\d{3})\s?(.*)", lines[0])
        if not m:
            return out, data
        status = int(m.group(1))
        headers = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        rest = data[end + 4:]
        if status in head_only_statuses or 100 <= status < 200:
            out.append(Response(status, headers, b"", m.group(2)))
            data = rest
            continue
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            pos = 0
            complete = False
            while True:
                le = rest.find(b"\r\n", pos)
                if le < 0:
                    break
                size = int(rest[pos:le].split(b";")[0] or b"0", 16)
                if size == 0:
                    te = rest.find(b"\r\n", le + 2)
                    if te < 0:
                        break
                    pos = te + 2
                    complete = True
                    break
                if len(rest) < le + 2 + size + 2:
                    break
                body += rest[le + 2:le + 2 + size]
                pos = le + 2 + size + 2
            if not complete:
                return out, data
            out.append(Response(status, headers, body, m.group(2)))
            data = rest[pos:]
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if len(rest) < n:
                return out, data
            out.append(Response(status, headers, rest[:n], m.group(2)))
            data = rest[n:]
        else:
            out.append(Response(status, headers, rest, m.group(2)))
            return out, b""


class RawConn:
    """A raw TCP connection for HTTP edge-case tests."""

    def __init__(self, port, host="127.0.0.1", timeout=5):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.closed_by_peer = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _recv(self, timeout):
        self.sock.settimeout(max(timeout, 0.01))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            self.closed_by_peer = True
            return b""
        if not chunk:
            self.closed_by_peer = True
        return chunk

    def read_responses(self, n, timeout=5):
        """Read until n complete responses arrived (or timeout/close); returns the parsed list
        (the bytes stay in self.buf)."""
        deadline = time.time() + timeout
        while True:
            resps, _ = parse_responses(self.buf)
            if len(resps) >= n or self.closed_by_peer:
                return resps
            left = deadline - time.time()
            if left <= 0:
                return resps
            chunk = self._recv(left)
            if chunk:
                self.buf += chunk

    def read_until_closed(self, timeout=5):
        """Read until the peer closes or timeout; returns (all bytes, closed?)."""
        deadline = time.time() + timeout
        while not self.closed_by_peer:
            left = deadline - time.time()
            if left <= 0:
                break
            chunk = self._recv(left)
            if chunk:
                self.buf += chunk
        return self.buf, self.closed_by_peer

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def raw_request(port, data, read_timeout=5, responses=None, host="127.0.0.1"):
    """Send raw bytes and return every byte received until the peer closes, read_timeout
    passes with nothing new, or (when responses=N) N complete responses arrived."""
    with RawConn(port, host=host, timeout=read_timeout) as c:
        c.send(data)
        while not c.closed_by_peer:
            if responses is not None and len(parse_responses(c.buf)[0]) >= responses:
                break
            chunk = c._recv(read_timeout)
            if chunk is None:
                break
            c.buf += chunk
        return c.buf


def http_bytes(method, path, body=b"", headers=None, host="127.0.0.1"):
    """Build one raw HTTP/1.1 request (Content-Length set unless given or chunked)."""
    if isinstance(body, str):
        body = body.encode()
    hdrs = [("Host", host)]
    names = set()
    for k, v in (headers or {}).items():
        hdrs.append((k, v))
        names.add(k.lower())
    if "content-length" not in names and "transfer-encoding" not in names and (body or method in ("POST", "PUT", "PATCH")):
        hdrs.append(("Content-Length", str(len(body))))
    head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
    return head.encode() + body


def lua_str(s):
    """A Lua string literal for s."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def cycle(name, steps, extra=""):
    """A cycle file's text: `name`, optional extra options, the steps."""
    return """local hw = require "hookwork"
return hw.cycle {
  name = %s,%s
  steps = {
%s
  },
}
""" % (lua_str(name), extra, steps)


# ---------------------------------------------------------------- transactions
# Shared by the mid-cycle and waiting suites.

def accepted(r, msg=""):
    eq(r.status, 202, (msg + ": " if msg else "") + "status (body %r)" % r.body)
    eq(sorted(r.json or {}), ["accepted", "transaction"], "202 body %r" % r.body)
    return r.json["transaction"]


def hist(t):
    return [(h.get("step"), h.get("status"), h.get("run")) for h in t.get("history") or []]


def park(e, order_id, cycle_name="orders", hook="new order", wait_step="status"):
    tid = accepted(e.post(e.hook_url(cycle_name, hook), json={"order_id": order_id}))
    t = e.wait_tx(tid, {"waiting", "failed", "completed"})
    eq(t["state"], "waiting", "parked (history %r)" % t.get("history"))
    eq(t["step"], wait_step, "a waiting transaction's step is its webhook")
    return tid


def wait_run(e, tid, run, step, timeout=10):
    """Wait until history shows `step` ended in run number `run`; return the transaction."""
    def get():
        t = e.tx(tid)
        for h in t.get("history") or []:
            if h.get("run") == run and h.get("step") == step and h.get("ended") is not None:
                return t
        return None
    return wait_until(get, timeout=timeout, msg="step %r of run %d of %s" % (step, run, tid))
