"""The authoring experience (issue 17): hookwork init, the editor type
definitions and luacheck over the example cycles, make install and the
Debian package, make run ARGS."""

SAME_ON_EVERY_STORE = "the command line, docs, packaging and log lines"  # run.py skips it under HOOKWORK_TEST_STORE=postgres

import os
import shutil
import subprocess
import tempfile

from lib import REPO, test, eq, ne, ok, contains, run_cli

SANITIZED = bool(os.environ.get("HOOKWORK_SANITIZED"))


def _tmp():
    return tempfile.mkdtemp(prefix="hookwork-auth-")


@test
def init_scaffolds_a_project_that_checks_and_tests():
    d = os.path.join(_tmp(), "new", "cycles")
    r = run_cli(["init", d])
    eq(r.returncode, 0, r.stderr)
    names = sorted(os.listdir(d))
    eq(names, [".luarc.json", "contacts.lua", "contacts_test.lua", "crm.lua"])
    files = [os.path.join(d, n) for n in names if n.endswith(".lua")]
    r = run_cli(["check"] + files)
    eq(r.returncode, 0, r.stderr + r.stdout)
    r = run_cli(["test", d], timeout=60)
    eq(r.returncode, 0, r.stdout + r.stderr)
    contains(r.stdout, "3 passed, 0 failed")


@test
def init_refuses_to_overwrite_and_writes_nothing():
    d = _tmp()
    with open(os.path.join(d, "contacts.lua"), "w") as f:
        f.write("-- mine\n")
    r = run_cli(["init", d])
    eq(r.returncode, 1)
    contains(r.stderr, "contacts.lua already exists")
    eq(sorted(os.listdir(d)), ["contacts.lua"])
    eq(open(os.path.join(d, "contacts.lua")).read(), "-- mine\n")


@test
def init_luarc_points_at_the_type_definitions():
    d = _tmp()
    eq(run_cli(["init", d]).returncode, 0)
    import json
    cfg = json.load(open(os.path.join(d, ".luarc.json")))
    lib = cfg["workspace.library"][0]
    ok(os.path.isfile(os.path.join(lib, "hookwork.lua")), "no hookwork.lua in %s" % lib)
    ok(os.path.isfile(os.path.join(lib, "hookwork", "test.lua")))
    text = open(os.path.join(lib, "hookwork.lua")).read()
    for name in ("function hw.cycle", "function hw.webhook", "function hw.request",
                 "function http.get", "function verify.github", "function hw.secret"):
        contains(text, name)


def _luacheck(*paths):
    return subprocess.run(["luacheck", "--no-color", "--config", os.path.join(REPO, ".luacheckrc")]
                          + list(paths), cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)


@test
def luacheck_passes_over_the_example_cycles():
    r = _luacheck("cycles", "tests/bench/cycles")
    eq(r.returncode, 0, r.stdout)


@test
def luacheck_flags_what_the_sandbox_does_not_have():
    d = _tmp()
    with open(os.path.join(d, "bad.lua"), "w") as f:
        f.write('local hw = require "hookwork"\nlocal f = io.open("/etc/passwd")\n'
                'os.execute("true")\nreturn hw.cycle { steps = { f } }\n')
    r = _luacheck(os.path.join(d, "bad.lua"))
    ok(r.returncode != 0, r.stdout)
    contains(r.stdout, "undefined variable 'io'")
    contains(r.stdout, "undefined field 'execute'")


def _make(*args, timeout=300):
    return subprocess.run(["make", "--no-print-directory"] + list(args), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


@test
def make_install_puts_everything_under_destdir():
    if SANITIZED:
        print("  (package tests run in the release pass only)")
        return
    dest = _tmp()
    r = _make("install", "PREFIX=/opt/hw", "DESTDIR=" + dest)
    eq(r.returncode, 0, r.stdout)
    root = os.path.join(dest, "opt/hw")
    for p in ("bin/hookwork", "share/hookwork/lua/hookwork.lua",
              "share/hookwork/lua/types/hookwork.lua", "share/man/man1/hookwork.1.gz",
              "share/doc/hookwork/cycles.md", "lib/systemd/system/hookwork.service"):
        ok(os.path.exists(os.path.join(root, p)), "missing " + p)
    unit = open(os.path.join(root, "lib/systemd/system/hookwork.service")).read()
    contains(unit, "ExecStart=/opt/hw/bin/hookwork run")
    for d in ("DynamicUser=yes", "StateDirectory=hookwork", "ProtectSystem=strict",
              "NoNewPrivileges=yes"):
        contains(unit, d)
    # the installed binary finds its Lua side under PREFIX/share
    r = subprocess.run([os.path.join(root, "bin/hookwork"), "check",
                        os.path.join(REPO, "cycles/hello.lua")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    eq(r.returncode, 0, r.stderr)


@test
def make_deb_builds_a_clean_package_that_runs_when_unpacked():
    if SANITIZED:
        print("  (package tests run in the release pass only)")
        return
    r = _make("deb")
    eq(r.returncode, 0, r.stdout)
    deb = os.path.join(REPO, r.stdout.strip().splitlines()[-1])
    ok(os.path.isfile(deb), deb)
    listing = subprocess.run(["dpkg-deb", "-c", deb], stdout=subprocess.PIPE, text=True).stdout
    for p in ("./usr/bin/hookwork", "./usr/share/hookwork/lua/hookwork.lua",
              "./lib/systemd/system/hookwork.service", "./usr/share/man/man1/hookwork.1.gz",
              "./usr/share/doc/hookwork/copyright", "./etc/hookwork/cycles/hello.lua"):
        contains(listing, p)
    info = subprocess.run(["dpkg-deb", "-I", deb], stdout=subprocess.PIPE, text=True).stdout
    contains(info, "Package: hookwork")
    contains(info, "liblua5.4-0")
    if shutil.which("lintian"):
        lint = subprocess.run(["lintian", deb], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=240).stdout
        errors = [l for l in lint.splitlines() if l.startswith("E:")]
        eq(errors, [], lint)
    root = _tmp()
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
    r = subprocess.run([os.path.join(root, "usr/bin/hookwork"), "check",
                        os.path.join(root, "etc/hookwork/cycles/hello.lua")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    eq(r.returncode, 0, r.stderr)


@test
def make_run_passes_args_through():
    r = _make("-n", "run", "ARGS=--listen 127.0.0.1:9999 --admin 127.0.0.1:9998")
    eq(r.returncode, 0, r.stdout)
    contains(r.stdout, "./hookwork run --listen 127.0.0.1:9999 --admin 127.0.0.1:9998")


# ---------------------------------------------------------------- logs

import json as _json
import time as _time

from lib import Engine, wait_until

HELLO = '''local hw = require "hookwork"
return hw.cycle { name = "hello", steps = {
  hw.webhook { name = "in" },
  hw.respond { name = "r", body = { ok = true } } } }
'''


@test
def start_line_names_bound_addresses_and_public_url_apart():
    with Engine({"hello.lua": HELLO}, args=["--public-url", "https://hooks.example.com"]) as e:
        e.start()
        line = [l for l in e.log().splitlines() if "listening on" in l][0]
        contains(line, "127.0.0.1:%d (webhooks)" % e.port)
        contains(line, "127.0.0.1:%d (admin)" % e.admin_port)
        contains(line, "https://hooks.example.com/hooks/")


@test
def reload_line_names_each_file_and_what_changed():
    with Engine({"hello.lua": HELLO}) as e:
        e.start()
        e.write("hello.lua", HELLO.replace("ok = true", "ok = false"))
        e.write("second.lua", HELLO.replace('"hello"', '"second"'))
        wait_until(lambda: "second.lua added" in e.log(), msg="reload line naming second.lua")
        e.write("hello.lua", "return {")
        wait_until(lambda: "hello.lua failed (the previous version stays)" in e.log(),
                   msg="reload line for a broken file")
        e.remove("second.lua")
        wait_until(lambda: "second.lua removed" in e.log(), msg="reload line for a removed file")
        contains(e.log(), "hello.lua changed")
        ok("cycles reloaded" not in e.log(), "the old anonymous reload line is gone")


@test
def log_format_json_writes_one_json_object_per_line():
    with Engine({"hello.lua": HELLO}, args=["--log-format", "json"]) as e:
        e.start()
        e.write("hello.lua", HELLO.replace("ok = true", 'ok = "quote \\" and \\\\ backslash"'))
        wait_until(lambda: "hello.lua changed" in e.log(), msg="reload line")
        e.stop()
        lines = [l for l in e.log().splitlines() if l and not l.startswith("--- e2e")]
        ok(len(lines) >= 3, lines)
        for l in lines:
            obj = _json.loads(l)
            ok(set(obj) >= {"time", "module", "msg"}, l)
        ok(any("listening on" in _json.loads(l)["msg"] for l in lines))


@test
def log_format_refuses_an_unknown_name():
    r = run_cli(["run", "--log-format", "xml", "--data", _tmp()])
    eq(r.returncode, 2)
    contains(r.stderr, "--log-format: expected text or json, got 'xml'")


# ---------------------------------------------------------------- check

def _check_files(files, *flags):
    d = _tmp()
    paths = []
    for name, text in files.items():
        p = os.path.join(d, name)
        with open(p, "w") as f:
            f.write(text)
        paths.append(p)
    return d, run_cli(["check"] + list(flags) + sorted(paths))


SHOP = 'local hw = require "hookwork"\nreturn hw.connector { name = "shop" }\n'


@test
def check_names_the_valid_types_and_suggests_one():
    d, r = _check_files({"a.lua": 'local hw = require "hookwork"\nreturn hw.cycle { steps = {\n'
                                  '  hw.webhook { name = "in", fields = { a = "str" } } } }\n'})
    eq(r.returncode, 1)
    contains(r.stderr, d + "/a.lua:3: hw.webhook: field 'a': unknown type 'str' (did you mean 'string'?); "
             "the types are string, number, integer, boolean, object, array and any")


@test
def check_suggests_the_option_meant():
    d, r = _check_files({"b.lua": 'local hw = require "hookwork"\nreturn hw.cycle { steps = {\n'
                                  '  hw.webhook { name = "in" },\n'
                                  '  hw.request { name = "r", url = "/x", retris = 3 } } }\n',
                         "c.lua": 'local hw = require "hookwork"\nreturn hw.cycle { sync_timout = 3, steps = {\n'
                                  '  hw.webhook { name = "in" } } }\n'})
    eq(r.returncode, 1)
    contains(r.stderr, d + "/b.lua:4: hw.request: unknown option 'retris' (did you mean 'retries'?)")
    contains(r.stderr, "/c.lua:3: hw.cycle: unknown option 'sync_timout' (did you mean 'sync_timeout'?)")


@test
def check_finds_a_match_field_the_transaction_never_has():
    cyc = ('local hw = require "hookwork"\nreturn hw.cycle { connector = "shop", steps = {\n'
           '  hw.webhook { name = "in", fields = { order_id = "string", amount = "number" } },\n'
           '  hw.map { name = "m", fields = { total = "amount" } },\n'
           '  hw.webhook { name = "status", match = "orderId" } } }\n')
    d, r = _check_files({"d.lua": cyc, "shop.lua": SHOP})
    eq(r.returncode, 1)
    contains(r.stderr, d + "/d.lua:5: webhook 'status': match field 'orderId' is never in the "
             "transaction's data (it has amount, order_id, total) (did you mean 'order_id'?)")
    # a step (any Lua) may set it: no complaint then
    d, r = _check_files({"d.lua": cyc.replace('  hw.map', '  hw.step { name = "s", run = function(tx) '
                                                 'tx.data.orderId = 1 end },\n  hw.map'),
                         "shop.lua": SHOP})
    eq(r.returncode, 0, r.stderr)


@test
def check_finds_jumps_to_unknown_or_earlier_steps_and_duplicates():
    d, r = _check_files({"e.lua": 'local hw = require "hookwork"\nreturn hw.cycle { steps = {\n'
                                  '  hw.webhook { name = "in" },\n'
                                  '  hw.step { name = "work", run = function() end },\n'
                                  '  hw.decision { name = "d", test = function() end, on_false = "wrok" } } }\n',
                         "f.lua": 'local hw = require "hookwork"\nreturn hw.cycle { steps = {\n'
                                  '  hw.webhook { name = "in" },\n'
                                  '  hw.step { name = "work", run = function() end },\n'
                                  '  hw.decision { name = "d", test = function() end, on_false = "work" } } }\n',
                         "g.lua": 'local hw = require "hookwork"\nreturn hw.cycle { steps = {\n'
                                  '  hw.webhook { name = "in" },\n'
                                  '  hw.step { name = "in", run = function() end } } }\n'})
    eq(r.returncode, 1)
    contains(r.stderr, d + "/e.lua:5: decision 'd': on_false names no step 'wrok'")
    contains(r.stderr, d + "/f.lua:5: decision 'd': on_false step 'work' must come later")
    contains(r.stderr, d + "/g.lua:4: duplicate step name 'in'")


@test
def check_unknown_connector_is_suggested():
    d, r = _check_files({"h.lua": 'local hw = require "hookwork"\nreturn hw.cycle { connector = "shopp",\n'
                                  '  steps = { hw.webhook { name = "in" } } }\n', "shop.lua": SHOP})
    eq(r.returncode, 1)
    contains(r.stderr, d + "/h.lua:3: unknown connector 'shopp' (did you mean 'shop'?)")


@test
def check_json_output_for_editors():
    d, r = _check_files({"a.lua": 'local hw = require "hookwork"\nreturn hw.cycle { steps = {\n'
                                  '  hw.webhook { name = "in", fields = { a = "strnig" } } } }\n',
                         "shop.lua": SHOP}, "--json")
    eq(r.returncode, 1)
    doc = _json.loads(r.stdout)
    eq(len(doc["diagnostics"]), 1)
    diag = doc["diagnostics"][0]
    eq(diag["file"], d + "/a.lua")
    eq(diag["line"], 3)
    eq(diag["severity"], "error")
    contains(diag["message"], "unknown type 'strnig' (did you mean 'string'?)")
    eq(sorted((f["file"].rsplit("/", 1)[1], f["ok"]) for f in doc["files"]),
       [("a.lua", False), ("shop.lua", True)])
    d, r = _check_files({"shop.lua": SHOP}, "--json")
    eq(r.returncode, 0)
    eq(_json.loads(r.stdout)["diagnostics"], [])


# ---------------------------------------------------------------- docs

import re as _re


def _doc_blocks():
    text = open(os.path.join(REPO, "docs", "cycles.md")).read()
    out = []
    for block in _re.findall(r"```lua\n(.*?)```", text, _re.S):
        first = block.split("\n", 1)[0]
        ok(first.startswith("-- "), "a lua block of docs/cycles.md does not name its file: " + first)
        out.append((first[3:].strip(), block))
    return out


@test
def docs_examples_are_the_repository_files_they_name():
    same = 0
    for path, block in _doc_blocks():
        repo_file = os.path.join(REPO, path)
        if os.path.exists(repo_file):
            eq(open(repo_file).read(), block, "docs/cycles.md's %s differs from %s" % (path, path))
            same += 1
    ok(same >= 4, "the docs show the repository's example files (%d found)" % same)


@test
def docs_examples_check_and_test():
    d = _tmp()
    for path, block in _doc_blocks():
        p = os.path.join(d, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(block)
    cyc = os.path.join(d, "cycles")
    files = sorted(os.path.join(cyc, n) for n in os.listdir(cyc) if n.endswith(".lua"))
    r = run_cli(["check"] + files, cwd=d)
    eq(r.returncode, 0, r.stderr)
    r = run_cli(["test", cyc], cwd=d, timeout=120)
    eq(r.returncode, 0, r.stdout + r.stderr)


@test
def readme_and_docs_link_only_inside_the_repository():
    for name in ["README.md"] + ["docs/" + n for n in os.listdir(os.path.join(REPO, "docs"))
                                 if n.endswith(".md")]:
        text = open(os.path.join(REPO, name)).read()
        ok("../shared" not in text and "/work/shared" not in text, name + " points outside the repository")
        for target in _re.findall(r"\]\(([^)#]+)[^)]*\)", text):
            if target.startswith("http"):
                continue
            base = os.path.dirname(os.path.join(REPO, name))
            ok(os.path.exists(os.path.join(base, target)), "%s links to missing %s" % (name, target))


def _reference():
    return open(os.path.join(REPO, "docs", "reference.md")).read()


@test
def reference_names_every_command_line_flag():
    r = run_cli(["--help"])
    eq(r.returncode, 0)
    flags = set(_re.findall(r"--[a-z][a-z-]+", r.stdout))
    ok(len(flags) >= 8, flags)
    ref = _reference()
    missing = sorted(f for f in flags if f not in ref)
    eq(missing, [], "docs/reference.md does not mention these flags of hookwork --help")


@test
def reference_names_every_environment_variable_the_engine_reads():
    names = set()
    for top in ("core", "lua"):
        for dirpath, _, files in os.walk(os.path.join(REPO, top)):
            for n in files:
                if n.endswith((".c", ".h", ".lua")):
                    names |= set(_re.findall(r"HOOKWORK_[A-Z][A-Z_]*[A-Z]",
                                             open(os.path.join(dirpath, n), errors="replace").read()))
    ok("HOOKWORK_ADMIN_TOKEN" in names, names)
    ref = _reference()
    eq(sorted(n for n in names if n not in ref), [],
       "docs/reference.md does not mention these environment variables")


@test
def reference_names_every_metric_and_admin_route():
    src = ""
    for dirpath, _, files in os.walk(os.path.join(REPO, "lua")):
        for n in files:
            if n.endswith(".lua") and "types" not in dirpath:
                src += open(os.path.join(dirpath, n)).read()
    metrics = set(_re.findall(r"hookwork_[a-z_]+(?:_total|_seconds|_in_flight)\b|hookwork_transactions\b", src))
    ok("hookwork_webhook_requests_total" in metrics, metrics)
    ref = _reference()
    eq(sorted(m for m in metrics if m not in ref), [], "docs/reference.md does not mention these metrics")
    routes = set(_re.findall(r'"(/api/[a-z]+)', src))
    ok("/api/cycles" in routes, routes)
    eq(sorted(r for r in routes if r not in ref), [], "docs/reference.md does not mention these admin routes")


@test
def lua_gc_mode_is_checked():
    # HOOKWORK_LUA_GC: generational (the default) or incremental; anything
    # else is named and nothing runs
    d = os.path.join(_tmp(), "cycles")
    r = run_cli(["init", d])
    eq(r.returncode, 0, r.stderr)
    files = [os.path.join(d, n) for n in sorted(os.listdir(d)) if n.endswith(".lua")]
    for mode in ("generational", "incremental", ""):
        r = run_cli(["check"] + files, env={"HOOKWORK_LUA_GC": mode})
        eq(r.returncode, 0, "HOOKWORK_LUA_GC=%r: %s" % (mode, r.stderr + r.stdout))
        r = run_cli(["test", d], env={"HOOKWORK_LUA_GC": mode}, timeout=60)
        eq(r.returncode, 0, r.stdout + r.stderr)
    for bad in ("gen", "Generational", "incremental "):
        r = run_cli(["check"] + files, env={"HOOKWORK_LUA_GC": bad})
        ne(r.returncode, 0, "HOOKWORK_LUA_GC=%r refused" % bad)
        contains(r.stderr, "HOOKWORK_LUA_GC=%s: expected generational" % bad)
