/* main: the command line (run, test, check, --version, --help). */
#include "engine.h"
#include "lua_api.h"
#include "store_pg.h"
#include "log.h"
#include "scaffold.h"

#include <errno.h>
#include <ftw.h>
#include <lauxlib.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
  "usage:\n"
  "  hookwork run   [--cycles DIR] [--data DIR] [--listen HOST:PORT] "
  "[--admin HOST:PORT]\n"
  "                 [--public-url URL] [--max-body BYTES] "
  "[--trust-proxy CIDR ...]\n"
  "                 [--log-format text|json] [--admin-open] "
  "[--max-connections N]\n"
  "                 [--outbound-deny CIDR ...] [--store postgres://USER@HOST"
  "[:PORT]/DB]\n"
  "                 [--node NAME] [--lease SECONDS]\n"
  "  hookwork migrate --store postgres://...   create or upgrade the "
  "PostgreSQL schema\n"
  "  hookwork test  [PATH ...]   run the *_test.lua files under PATH "
  "(default: the cycles directory)\n"
  "  hookwork check FILE ...     load and validate cycle files\n"
  "  hookwork init  [DIR]        start a cycles directory (default ./cycles)\n"
  "  hookwork --version | --help\n"
  "environment: HOOKWORK_ADMIN_TOKEN (admin bearer token), "
  "HOOKWORK_READ_TIMEOUT (seconds),\n"
  "  HOOKWORK_STEP_BUDGET (Lua instructions per step), HOOKWORK_GRACE "
  "(seconds to finish on SIGTERM),\n"
  "  HOOKWORK_MAX_RUNS, HOOKWORK_MAX_OUTBOUND, HOOKWORK_OUTBOUND_POOL,\n"
  "  HOOKWORK_MAX_BODY_BUFFER, "
  "HOOKWORK_MAX_RESPONSE,\n"
  "  HOOKWORK_MAX_RESPONSE_BUFFER, HOOKWORK_MAX_PENDING (uncommitted writes)\n"
  "  HOOKWORK_STORE (as --store), HOOKWORK_NODE (as --node)\n"
  "  (limits, see docs/reference.md)\n";

/* A positive size from the environment, or def. */
static size_t env_size(const char *name, size_t def) {
  const char *v = getenv(name);
  char *end;
  unsigned long long n;

  if (v == NULL)
    return def;
  errno = 0;
  n = strtoull(v, &end, 10);
  if (errno || *end != '\0' || end == v || n == 0) {
    fprintf(stderr, "hookwork: %s: expected a positive number, got '%s'; "
            "using %zu\n", name, v, def);
    return def;
  }
  return (size_t) n;
}

/* Bounds that keep a small machine standing (docs/operations.md). */
static void limit_defaults(hw_config_t *c) {
  c->max_connections = 10000;
  c->max_body_buffer = env_size("HOOKWORK_MAX_BODY_BUFFER", (size_t) 128 << 20);
  c->max_runs = (int) env_size("HOOKWORK_MAX_RUNS", 10000);
  /* "0": every webhook request takes the Lua accept path (core/fastpath.h) */
  c->no_fast_accept = getenv("HOOKWORK_FAST_ACCEPT") != NULL &&
                      strcmp(getenv("HOOKWORK_FAST_ACCEPT"), "0") == 0;
  c->max_outbound = (long) env_size("HOOKWORK_MAX_OUTBOUND", 512);
  c->outbound_pool = (long) env_size("HOOKWORK_OUTBOUND_POOL", 0);
  c->max_response = env_size("HOOKWORK_MAX_RESPONSE", (size_t) 64 << 20);
  c->max_response_buffer =
      env_size("HOOKWORK_MAX_RESPONSE_BUFFER", (size_t) 256 << 20);
}

static void default_config(hw_config_t *c, char *luadir, size_t len) {
  char exe[PATH_MAX - 32];
  size_t n = sizeof exe;
  const char *env;

  memset(c, 0, sizeof *c);
  c->cycles_dir = "./cycles";
  c->data_dir = "./var";
  c->listen = "127.0.0.1:8080";
  c->admin = "127.0.0.1:8081";
  c->max_body = 1024 * 1024;
  c->read_timeout_ms = 10000;
  c->step_budget = 50000000;
  c->grace = 10;
  c->admin_token = getenv("HOOKWORK_ADMIN_TOKEN");
  c->lease = 15;
  if ((env = getenv("HOOKWORK_STORE")) != NULL && *env != '\0')
    c->store_url = env;
  if ((env = getenv("HOOKWORK_NODE")) != NULL && *env != '\0')
    c->node = env;
  limit_defaults(c);
  if ((env = getenv("HOOKWORK_READ_TIMEOUT")) != NULL && atof(env) > 0)
    c->read_timeout_ms = (unsigned) (atof(env) * 1000);
  if ((env = getenv("HOOKWORK_STEP_BUDGET")) != NULL && atol(env) > 0)
    c->step_budget = atol(env);
  if ((env = getenv("HOOKWORK_GRACE")) != NULL && atof(env) >= 0)
    c->grace = atof(env);
  /* The lua/ modules live next to the executable. */
  if ((env = getenv("HOOKWORK_LUA_DIR")) != NULL) {
    snprintf(luadir, len, "%s", env);
  } else if (uv_exepath(exe, &n) == 0) {
    struct stat sb;
    char *slash = strrchr(exe, '/');
    if (slash != NULL)
      *slash = '\0';
    snprintf(luadir, len, "%s/lua", exe);
    /* installed: PREFIX/bin/hookwork and PREFIX/share/hookwork/lua */
    if (stat(luadir, &sb) != 0)
      snprintf(luadir, len, "%s/../share/hookwork/lua", exe);
  } else {
    snprintf(luadir, len, "lua");
  }
  c->lua_dir = luadir;
}

static int parse_size(const char *s, size_t *out) {
  char *end;
  unsigned long long v;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || *end != '\0' || end == s || v == 0)
    return -EINVAL;
  *out = (size_t) v;
  return 0;
}

static int parse_run_args(hw_config_t *c, int argc, char **argv) {
  int i;
  for (i = 0; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--admin-open") == 0) { /* the one option without a value */
      c->admin_open = 1;
      continue;
    }
    if (v == NULL) {
      fprintf(stderr, "hookwork run: unknown option or missing value: %s\n%s",
              a, usage);
      return -1;
    }
    if (strcmp(a, "--cycles") == 0) c->cycles_dir = v;
    else if (strcmp(a, "--data") == 0) c->data_dir = v;
    else if (strcmp(a, "--store") == 0) c->store_url = v;
    else if (strcmp(a, "--node") == 0) c->node = v;
    else if (strcmp(a, "--lease") == 0) {
      char *end;
      double s = strtod(v, &end);
      if (*end != '\0' || end == v || !(s >= 1 && s <= 3600)) {
        fprintf(stderr, "hookwork run: --lease: expected 1 to 3600 seconds, "
                "got '%s'\n", v);
        return -1;
      }
      c->lease = s;
    }
    else if (strcmp(a, "--listen") == 0) c->listen = v;
    else if (strcmp(a, "--admin") == 0) c->admin = v;
    else if (strcmp(a, "--public-url") == 0) c->public_url = v;
    else if (strcmp(a, "--log-format") == 0) {
      int f = hw_log_parse_format(v);
      if (f < 0) {
        fprintf(stderr, "hookwork run: --log-format: expected text or json, "
                "got '%s'\n", v);
        return -1;
      }
      hw_log_set_format(f);
    }
    else if (strcmp(a, "--max-body") == 0) {
      if (parse_size(v, &c->max_body) != 0) {
        fprintf(stderr, "hookwork run: --max-body: expected a positive "
                "number of bytes, got '%s'\n", v);
        return -1;
      }
    } else if (strcmp(a, "--trust-proxy") == 0) {
      if (c->ntrust >= 32) {
        fprintf(stderr, "hookwork run: at most 32 --trust-proxy\n");
        return -1;
      }
      c->trust_proxy[c->ntrust++] = v;
    } else if (strcmp(a, "--outbound-deny") == 0) {
      if (c->ndeny >= 64) {
        fprintf(stderr, "hookwork run: at most 64 --outbound-deny\n");
        return -1;
      }
      c->outbound_deny[c->ndeny++] = v;
    } else if (strcmp(a, "--max-connections") == 0) {
      size_t n;
      if (parse_size(v, &n) != 0 || n > 1000000) {
        fprintf(stderr, "hookwork run: --max-connections: expected 1 to "
                "1000000, got '%s'\n", v);
        return -1;
      }
      c->max_connections = (unsigned) n;
    } else {
      fprintf(stderr, "hookwork run: unknown option: %s\n%s", a, usage);
      return -1;
    }
    i++;
  }
  return 0;
}

/* --data DIR: DIR and any missing parent. 0, or -1 with errno. */
static int mkdir_p(const char *dir) {
  char path[PATH_MAX];
  size_t i, n = strlen(dir);
  struct stat sb;
  if (n == 0 || n >= sizeof path) {
    errno = n ? ENAMETOOLONG : ENOENT;
    return -1;
  }
  memcpy(path, dir, n + 1);
  for (i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0')
      continue;
    path[i] = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return -1;
    path[i] = i < n ? '/' : '\0';
  }
  if (stat(dir, &sb) != 0)
    return -1;
  if (!S_ISDIR(sb.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

/* --store: a postgres:// URL (empty: SQLite in --data). */
static int check_store(const char *url, const char *cmd) {
  if (url != NULL && !hw_pg_is_url(url)) {
    char shown[512];
    hw_pg_redact(url, shown, sizeof shown);
    fprintf(stderr, "hookwork %s: --store: expected postgres://USER@HOST"
            "[:PORT]/DB, got '%s'\n", cmd, shown);
    return -1;
  }
  return 0;
}

/* The default node name: this host and the webhook port, unique per
 * engine on one machine. */
static void default_node(hw_config_t *c, char *buf, size_t len) {
  char host[256];
  const char *port = strrchr(c->listen ? c->listen : "", ':');
  if (c->node != NULL)
    return;
  if (gethostname(host, sizeof host) != 0)
    snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  snprintf(buf, len, "%s:%s", host, port ? port + 1 : "8080");
  c->node = buf;
}

static int cmd_run(hw_config_t *c, int argc, char **argv) {
  static char node[300];
  uv_loop_t loop;
  hw_engine_t e;
  int rc;

  if (parse_run_args(c, argc, argv) != 0)
    return 2;
  if (check_store(c->store_url, "run") != 0)
    return 2;
  default_node(c, node, sizeof node);
  if (c->store_url == NULL && mkdir_p(c->data_dir) != 0) {
    fprintf(stderr, "hookwork: --data %s: %s\n", c->data_dir, strerror(errno));
    return 1;
  }
  uv_loop_init(&loop);
  rc = hw_engine_init(&e, &loop, c);
  if (rc != 0) {
    hw_engine_close_handles(&e); /* what init opened before it failed */
  } else if ((rc = hw_engine_serve(&e)) != 0) {
    e.stop_deadline = 0;
    hw_engine_stop(&e);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  hw_engine_free(&e);
  if (uv_loop_close(&loop) != 0)
    hw_log("engine", "loop closed with open handles");
  hw_log("engine", "stopped");
  return rc == 0 ? 0 : 1;
}

/* hookwork migrate --store URL: the schema created or upgraded, then exit
 * (nothing else touched; the engines may be stopped or not). */
static int cmd_migrate(hw_config_t *c, int argc, char **argv) {
  char what[200], err[512];
  int i;
  for (i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
      c->store_url = argv[++i];
    } else {
      fprintf(stderr, "hookwork migrate: unknown option or missing value: "
              "%s\n%s", argv[i], usage);
      return 2;
    }
  }
  if (c->store_url == NULL) {
    fprintf(stderr, "hookwork migrate: name the database with --store "
            "postgres://... (or HOOKWORK_STORE)\n");
    return 2;
  }
  if (check_store(c->store_url, "migrate") != 0)
    return 2;
  if (hw_pg_migrate(c->store_url, what, sizeof what, err, sizeof err) != 0) {
    fprintf(stderr, "hookwork migrate: %s\n", err);
    return 1;
  }
  printf("hookwork migrate: %s\n", what);
  return 0;
}

/* check and test build an engine that never serves; Lua does the work. */
static int run_lua_mode(hw_config_t *c, const char *fn, int argc,
                        char **argv) {
  uv_loop_t loop;
  hw_engine_t e;
  int i, rc = 1;

  uv_loop_init(&loop);
  if (hw_engine_init(&e, &loop, c) == 0) {
    hw_engine_tick_start(&e);
    lua_createtable(e.L, argc, 0);
    for (i = 0; i < argc; i++) {
      lua_pushstring(e.L, argv[i]);
      lua_rawseti(e.L, -2, i + 1);
    }
    if (hw_lua_call(&e, fn, 1, 1) == 0) {
      rc = (int) lua_tointeger(e.L, -1);
      lua_pop(e.L, 1);
    }
  }
  hw_engine_close_handles(&e);
  uv_run(&loop, UV_RUN_DEFAULT);
  hw_engine_free(&e);
  uv_loop_close(&loop);
  return rc;
}

int main(int argc, char **argv) {
  static char luadir[PATH_MAX];
  hw_config_t c;

  signal(SIGPIPE, SIG_IGN);
  default_config(&c, luadir, sizeof luadir);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "-h") == 0) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("hookwork %s\n", HW_VERSION);
    return 0;
  }
  if (strcmp(argv[1], "run") == 0)
    return cmd_run(&c, argc - 2, argv + 2);
  if (strcmp(argv[1], "migrate") == 0)
    return cmd_migrate(&c, argc - 2, argv + 2);
  if (strcmp(argv[1], "check") == 0) {
    if (argc < 3) {
      fprintf(stderr, "hookwork check: name at least one FILE\n");
      return 2;
    }
    c.mode = HW_MODE_CHECK;
    c.data_dir = NULL;
    return run_lua_mode(&c, "check_main", argc - 2, argv + 2);
  }
  if (strcmp(argv[1], "init") == 0) {
    char types[PATH_MAX + 8], abs[PATH_MAX];
    if (argc > 3) {
      fprintf(stderr, "hookwork init: at most one DIR\n%s", usage);
      return 2;
    }
    snprintf(types, sizeof types, "%s/types", c.lua_dir);
    if (realpath(types, abs) != NULL)
      snprintf(types, sizeof types, "%s", abs);
    return hw_scaffold_init(argc == 3 ? argv[2] : "./cycles", types) == 0
             ? 0 : 1;
  }
  if (strcmp(argv[1], "test") == 0) {
    c.mode = HW_MODE_TEST;
    c.data_dir = NULL;
    return run_lua_mode(&c, "test_main", argc - 2, argv + 2);
  }
  fprintf(stderr, "hookwork: unknown command '%s'\n%s", argv[1], usage);
  return 2;
}
