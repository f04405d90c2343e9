"""README's "Several nodes on PostgreSQL": the nginx config it shows is valid
(nginx -t), and its commands (hookwork migrate, three hookwork run) work as
written, with only the URL, ports and directories replaced: three nodes on
one PostgreSQL behind nginx with that very config."""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse

import lib
from lib import (REPO, Engine, accepted, contains, eq, free_port, hookwork_bin, http_request, ok,
                 run_cli, skip, test, wait_until)

README = os.path.join(REPO, "README.md")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

CYCLE = lib.cycle("orders", """
    hw.webhook { name = "new", fields = { order_id = "string" } },
    hw.webhook { name = "status", match = "order_id" },
    hw.step { name = "done", run = function(tx) tx.data.done = true end },
""")


def readme_block(tag):
    """The fenced block right after `<!-- readme-test: TAG ...-->` in README.md."""
    with open(README) as f:
        text = f.read()
    m = re.search(r"<!-- readme-test: %s\b[^>]*-->\s*```[a-z]*\n(.*?)```" % re.escape(tag), text, re.S)
    ok(m, "README.md has a code block marked readme-test: %s" % tag)
    return m.group(1)


def need_nginx():
    if not os.access(NGINX, os.X_OK):
        skip("no nginx binary (%s); `make` installs nginx-light" % NGINX)


def nginx_conf(block, ports, listen, prefix):
    """README's block with its ports replaced, inside a complete nginx.conf
    whose files all live under prefix."""
    for old, new in ports.items():
        block = re.sub(r"\b127\.0\.0\.1:%d\b" % old, "127.0.0.1:%d" % new, block)
    block = re.sub(r"\blisten\s+80;", "listen 127.0.0.1:%d;" % listen, block)
    temps = "".join("    %s_temp_path %s/%s;\n" % (k, prefix, k)
                    for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return ("daemon off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n    access_log off;\n%s%s\n}\n" % (prefix, prefix, temps, block))


def nginx_t(conf_text, prefix):
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf_text)
    r = subprocess.run([NGINX, "-t", "-p", prefix, "-c", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30)
    return r.returncode, r.stdout, path


def read(path):
    try:
        with open(path) as f:
            return f.read()[-2000:]
    except OSError as ex:
        return str(ex)


def readme_ports(block):
    return sorted({int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", block)})


@test
def readme_nginx_config_passes_nginx_t():
    need_nginx()
    block = readme_block("nginx")
    for need in ("upstream hookwork", "proxy_pass http://hookwork", "X-Forwarded-For",
                 "$proxy_add_x_forwarded_for", "proxy_http_version 1.1"):
        contains(block, need, "the README's nginx block")
    ok("non_idempotent" not in block, "a POST is never sent twice by the balancer")
    ports = readme_ports(block)
    eq(len(ports), 3, "three upstream servers")
    prefix = tempfile.mkdtemp(prefix="hookwork-nginx-")
    try:
        mapping = {p: free_port() for p in ports}
        code, out, _ = nginx_t(nginx_conf(block, mapping, free_port(), prefix), prefix)
        eq(code, 0, "nginx -t on the README's config:\n%s" % out)
        contains(out, "syntax is ok")
        # the check can fail: the same block with one directive misspelt
        code, out, _ = nginx_t(nginx_conf(block.replace("proxy_pass", "proxy_pas", 1), mapping,
                                          free_port(), prefix), prefix)
        ok(code != 0 and "proxy_pas" in out, "nginx -t refuses a broken config", out)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def readme_commands():
    """(store variable name, migrate argv, [run argv ...]) from the README's block."""
    var, migrate, runs = None, None, []
    for line in readme_block("commands").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"export (\w+)=(\S+)$", line)
        if m:
            var = m.group(1)
            continue
        argv = shlex.split(line.rstrip("&").strip())
        ok(argv[0] == "hookwork", "README command starts with hookwork: %r" % line)
        if argv[1] == "migrate":
            migrate = argv
        elif argv[1] == "run":
            runs.append(argv)
        else:
            raise AssertionError("unexpected README command %r" % line)
    ok(var and migrate and len(runs) == 3, "export, migrate and three runs in the README", var, migrate, runs)
    return var, migrate, runs


def substitute(argv, var, url, ports, cycles):
    out = []
    for a in argv:
        a = a.replace("$" + var, url).replace("${%s}" % var, url)
        for old, new in ports.items():
            a = re.sub(r"^127\.0\.0\.1:%d$" % old, "127.0.0.1:%d" % new, a)
        if a == "./cycles":
            a = cycles
        out.append(a)
    out[0] = hookwork_bin()
    return out


def arg(argv, name):
    return argv[argv.index(name) + 1]


@test
def readme_three_nodes_behind_nginx():
    need_nginx()
    url = lib.pg_database()
    if "--store" not in (run_cli(["--help"]).stdout + run_cli(["--help"]).stderr):
        skip("this hookwork has no --store yet")
    var, migrate, runs = readme_commands()
    ports = readme_ports(" ".join(" ".join(r) for r in runs))
    eq(len(ports), 6, "three webhook and three admin ports in the README")
    mapping = {p: free_port() for p in ports}
    prefix = tempfile.mkdtemp(prefix="hookwork-nginx-")
    nginx = None
    nodes = []
    try:
        r = run_cli(substitute(migrate, var, url, mapping, "")[1:], timeout=60)
        eq(r.returncode, 0, "hookwork migrate as in the README: %s%s" % (r.stdout, r.stderr))
        for argv in runs:
            e = Engine({"orders.lua": CYCLE}, store=url)
            full = substitute(argv, var, url, mapping, e.cycles_dir)
            e.port = int(arg(full, "--listen").rsplit(":", 1)[1])
            e.admin_port = int(arg(full, "--admin").rsplit(":", 1)[1])
            e.command = lambda full=full: full
            nodes.append(e)
            e.start()
        public = arg(runs[0], "--public-url")
        hook = nodes[0].hook_url("orders", "new")
        ok(hook.startswith(public + "/hooks/"), "webhook URLs on the public address", hook)
        eq(nodes[2].hook_url("orders", "new"), hook, "the same URL on every node")
        path = urllib.parse.urlsplit(hook).path
        status = urllib.parse.urlsplit(nodes[1].hook_url("orders", "status")).path

        listen = free_port()
        conf = nginx_conf(readme_block("nginx"), mapping, listen, prefix)
        code, out, conf_path = nginx_t(conf, prefix)
        eq(code, 0, out)
        nginx = subprocess.Popen([NGINX, "-p", prefix, "-c", conf_path], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)

        def via(p, body, src="127.0.0.2"):
            return http_request("127.0.0.1", listen, "POST", p, body=body,
                                headers={"Content-Type": "application/json"}, source_ip=src)
        def probe():
            if nginx.poll() is not None:
                raise AssertionError("nginx exited %s: %s" % (nginx.returncode, read(os.path.join(prefix, "error.log"))))
            try:
                return via(path, b'{"order_id":"probe"}').status == 202
            except OSError:
                return False
        wait_until(probe, timeout=10, msg="nginx up")

        ids = [accepted(via(path, ('{"order_id":"o%d"}' % i).encode()), "through nginx") for i in range(30)]
        owners = {row[0] for row in nodes[0].db_rows("SELECT owner FROM tx")}
        eq(len(owners), 3, "requests spread over the three nodes (owners %r)" % owners)
        t = nodes[2].wait_tx(ids[0], "waiting")
        eq(t["request"]["ip"], "127.0.0.2", "--trust-proxy: the client address, not nginx's")
        # a resume through the balancer finds its transaction whichever node parked it
        for i in range(3):
            eq(accepted(via(status, ('{"order_id":"o%d"}' % i).encode())), ids[i])
        for i in range(3):  # the step after the mid-cycle webhook ran (then it waits again)
            wait_until(lambda: nodes[i].tx(ids[i])["data"].get("done") is True, timeout=15,
                       msg="the resumed run of %s" % ids[i])

        # a node killed: nginx skips it, nothing is refused
        nodes[1].kill()
        more = [via(path, ('{"order_id":"k%d"}' % i).encode()) for i in range(20)]
        eq([x.status for x in more], [202] * 20, "every request through nginx with one node dead")
    finally:
        if nginx is not None:
            nginx.terminate()
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
        for e in nodes:
            e.close()
        shutil.rmtree(prefix, ignore_errors=True)
