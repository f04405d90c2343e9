/* engine: builds the engine from its configuration, serves, and stops.
 * The webhook listener's requests go to the Lua engine (E.webhook); the
 * tick timer drives sync timeouts, expiry and the graceful stop. */
#include "engine.h"
#include "store_pg.h"
#include "fastpath.h"
#include "dedupe.h"
#include "rejects.h"
#include "lua_api.h"
#include "log.h"
#include "scheduler.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define HW_TICK_MS 100

double hw_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

double hw_mono(void) { return (double) uv_hrtime() / 1e9; }

int hw_parse_hostport(const char *s, char *host, size_t hostlen, int *port) {
  const char *colon;
  char *end;
  long p;
  size_t n;

  if (s[0] == '[') {
    const char *rb = strchr(s, ']');
    if (rb == NULL || rb[1] != ':')
      return -EINVAL;
    n = (size_t) (rb - s - 1);
    colon = rb + 1;
    s++;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL)
      return -EINVAL;
    n = (size_t) (colon - s);
  }
  if (n >= hostlen)
    return -EINVAL;
  memcpy(host, s, n);
  host[n] = '\0';
  if (n == 0)
    snprintf(host, hostlen, "0.0.0.0");
  p = strtol(colon + 1, &end, 10);
  if (*end != '\0' || end == colon + 1 || p < 0 || p > 65535)
    return -EINVAL;
  *port = (int) p;
  return 0;
}

/* The client address: the peer, or with --trust-proxy the right-most
 * X-Forwarded-For address that is not a trusted proxy, read from every
 * X-Forwarded-For field in order (hw_xff_client).  Returns 0, or -1 with
 * msg set to the 400 to answer (list too long, or an entry that is not an
 * address). */
static int client_ip(hw_engine_t *e, hw_http_req_t *req, char *out,
                     size_t len, char *msg, size_t msglen) {
  const char *fields[HW_HTTP_MAX_HEADERS];
  size_t n = 0;
  int i, rc;

  for (i = 0; i < req->nheaders; i++)
    if (strcmp(req->headers[i].name, "x-forwarded-for") == 0)
      fields[n++] = req->headers[i].value;
  rc = hw_xff_client(e->trusted, req->peer_ip, fields, n, out, len, msg,
                     msglen);
  if (rc == -E2BIG)
    snprintf(msg, msglen, "X-Forwarded-For: list over %d bytes", HW_XFF_MAX);
  else if (rc == -ENOSPC)
    snprintf(msg, msglen, "X-Forwarded-For: entry too long");
  return rc == 0 ? 0 : -1;
}

static void push_request(lua_State *L, hw_http_req_t *req, const char *ip) {
  int i;
  lua_createtable(L, 0, 7);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, req->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, req->query);
  lua_setfield(L, -2, "query");
  lua_pushlstring(L, req->body ? req->body : "", req->body_len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, ip);
  lua_setfield(L, -2, "ip");
  lua_createtable(L, 0, req->nheaders);
  for (i = 0; i < req->nheaders; i++) {
    lua_pushstring(L, req->headers[i].value);
    lua_setfield(L, -2, req->headers[i].name);
  }
  lua_setfield(L, -2, "headers");
}

/* {"error":"MSG"} with MSG's quotes, backslashes and control bytes escaped
 * (it may quote client bytes). */
static void json_error(char *out, size_t cap, const char *msg) {
  size_t o = 0;
  const unsigned char *m = (const unsigned char *) msg;

  o = (size_t) snprintf(out, cap, "{\"error\":\"");
  for (; *m && o + 8 < cap; m++) {
    if (*m == '"' || *m == '\\')
      o += (size_t) snprintf(out + o, cap - o, "\\%c", *m);
    else if (*m < 0x20 || *m >= 0x7f)
      o += (size_t) snprintf(out + o, cap - o, "\\u%04x", *m);
    else
      out[o++] = (char) *m;
  }
  snprintf(out + o, cap - o, "\"}");
}

static void respond_json(hw_http_req_t *req, int status, const char *json) {
  hw_http_respond(req, status, "application/json", NULL, json, strlen(json));
}

struct web_call {
  hw_http_req_t *req;
  const char *ip;
};

/* Inside the protected call: out of memory while building the request's
 * table is an error of that call, never a panic. */
static int push_web_call(lua_State *L, void *arg) {
  struct web_call *w = arg;
  push_request(L, w->req, w->ip);
  lua_pushlightuserdata(L, w->req);
  return 2;
}

static void web_request(hw_http_server_t *srv, hw_http_req_t *req, void *arg) {
  hw_engine_t *e = arg;
  char ip[64], msg[160];
  (void) srv;

  if (strncmp(req->path, "/hooks/", 7) != 0) {
    respond_json(req, 404, "{\"error\":\"not found\"}");
    return;
  }
  if (e->stopping) {
    respond_json(req, 503, "{\"error\":\"shutting down\"}");
    return;
  }
  if (e->nruns >= e->cfg.max_runs) { /* e.g. a cycle that calls itself */
    static const char *const retry[] = {"Retry-After: 1", NULL};
    char body[128];
    int n = snprintf(body, sizeof body, "{\"error\":\"busy: %d runs in "
                     "flight (HOOKWORK_MAX_RUNS)\"}", e->nruns);
    hw_http_respond(req, 503, "application/json", retry, body, (size_t) n);
    return;
  }
  if (client_ip(e, req, ip, sizeof ip, msg, sizeof msg) != 0) {
    char body[256];
    json_error(body, sizeof body, msg);
    respond_json(req, 400, body);
    return;
  }
  if (!e->cfg.no_fast_accept && hw_fast_accept(e, req, ip) == 0)
    return;
  e->accepts.lua_path++;
  struct web_call w = {req, ip};
  /* E.webhook answers every request it is given, errors included. */
  if (hw_lua_callp(e, "webhook", push_web_call, &w, 0) != 0)
    hw_log("engine", "webhook handler failed; request dropped");
}

static void on_check(uv_check_t *h) {
  hw_engine_t *e = h->data;
  hw_sched_drain(e);
  if (e->store != NULL)
    hw_store_kick(e->store);
}

static void on_prepare(uv_prepare_t *h) {
  hw_engine_t *e = h->data;
  hw_loopstat_tick(&e->loopstat, e->loop);
  if (e->store != NULL)
    hw_store_kick(e->store);
}

static void finish(hw_engine_t *e);

static void on_tick(uv_timer_t *t) {
  hw_engine_t *e = t->data;
  lua_pushnumber(e->L, hw_now());
  hw_lua_call(e, "tick", 1, 0);
  if (e->stopping == 1 && e->store != NULL && ((e->nruns == 0 && hw_store_pending(e->store) == 0) ||
                           hw_mono() > e->stop_deadline))
    finish(e);
}

void hw_engine_tick_start(hw_engine_t *e) {
  uv_timer_start(&e->tick, on_tick, HW_TICK_MS, HW_TICK_MS);
}

static void on_signal(uv_signal_t *s, int signum) {
  hw_engine_t *e = s->data;
  hw_log("engine", "signal %d: stopping", signum);
  if (e->stopping)
    e->stop_deadline = 0; /* a second signal: stop now */
  hw_engine_stop(e);
}

/* File descriptors kept for what is not a connection (store, watcher,
 * loop, signals) and for the admin listener's connections, so that at the
 * limit /healthz still answers. */
#define FD_MISC 64
#define ADMIN_CONNS 32

/* Raises the soft fd limit to the hard one, then fits the webhook and
 * outbound connection caps under it, leaving the reserve above. */
static void fd_budget(hw_engine_t *e) {
  struct rlimit rl;
  long avail, out, web;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit up = rl;
    up.rlim_cur = rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
    if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
      rl = up;
  }
  avail = (long) (rl.rlim_cur > (1u << 20) ? (1u << 20) : rl.rlim_cur);
  avail -= FD_MISC + ADMIN_CONNS;
  if (avail < 32)
    avail = 32;
  out = e->cfg.max_outbound < avail / 2 ? e->cfg.max_outbound : avail / 2;
  web = (long) e->cfg.max_connections < avail - out ? (long) e->cfg.max_connections
                                                    : avail - out;
  if (out < e->cfg.max_outbound || web < (long) e->cfg.max_connections)
    hw_log("engine", "file descriptor limit %ld: at most %ld webhook and %ld "
           "outbound connections (%d kept for the admin API and the store)",
           (long) rl.rlim_cur, web, out, FD_MISC + ADMIN_CONNS);
  e->cfg.max_outbound = out;
  e->cfg.max_connections = (unsigned) web;
}

/* 1 when HOST (of --admin) is a loopback address: 127.0.0.0/8, ::1, or
 * "localhost". */
static int is_loopback(const char *host) {
  unsigned char a[16];
  static const unsigned char v6lo[16] = {[15] = 1};

  if (strcmp(host, "localhost") == 0)
    return 1;
  if (hw_ip_parse(host, a) != 0)
    return 0;
  return memcmp(a, v6lo, 16) == 0 ||
         (a[10] == 0xff && a[11] == 0xff && a[12] == 127 &&
          memcmp(a, (const unsigned char[10]){0}, 10) == 0);
}

/* The admin API changes what the engine lets in: off loopback it needs a
 * token, or the operator's explicit --admin-open.  0 or -EINVAL. */
static int admin_guard(const hw_config_t *cfg) {
  char host[256];
  int port;

  if (cfg->admin == NULL ||
      (cfg->admin_token != NULL && cfg->admin_token[0] != '\0'))
    return 0;
  if (hw_parse_hostport(cfg->admin, host, sizeof host, &port) != 0)
    return 0; /* start_servers names the bad value */
  if (is_loopback(host))
    return 0;
  if (cfg->admin_open) {
    hw_log("engine", "--admin-open: the admin API on %s has no token; anyone "
           "who can reach it can change the engine", cfg->admin);
    return 0;
  }
  fprintf(stderr, "hookwork: --admin %s is not a loopback address and "
          "HOOKWORK_ADMIN_TOKEN is not set: set a token, or pass "
          "--admin-open to serve the admin API to anyone who can reach it\n",
          cfg->admin);
  return -EINVAL;
}

int hw_engine_init(hw_engine_t *e, uv_loop_t *loop, const hw_config_t *cfg) {
  char err[512];
  int rc;

  memset(e, 0, sizeof *e);
  e->loop = loop;
  e->cfg = *cfg;
  if (cfg->mode == HW_MODE_RUN && admin_guard(cfg) != 0)
    return -EINVAL;
  if (cfg->ntrust > 0 &&
      hw_ipfilter_parse(cfg->trust_proxy, (size_t) cfg->ntrust, &e->trusted,
                        err, sizeof err) != 0) {
    fprintf(stderr, "hookwork: --trust-proxy: %s\n", err);
    return -EINVAL;
  }
  if (cfg->listen != NULL &&
      hw_parse_hostport(cfg->listen, e->listen_host, sizeof e->listen_host,
                        &e->listen_port) != 0) {
    fprintf(stderr, "hookwork: --listen: expected HOST:PORT, got '%s'\n",
            cfg->listen);
    return -EINVAL;
  }
  if (cfg->store_url != NULL) { /* PostgreSQL: --data is not used */
    rc = hw_store_open_pg(loop, cfg->store_url, cfg->node, &e->store, err,
                          sizeof err);
    if (rc != 0) {
      char shown[512];
      hw_pg_redact(cfg->store_url, shown, sizeof shown);
      fprintf(stderr, "hookwork: store %s: %s\n", shown, err);
      return rc;
    }
    /* admin reads (the reader thread) connect to the same database */
    if (strlen(cfg->store_url) >= sizeof e->reader_dir) {
      fprintf(stderr, "hookwork: --store: URL longer than %zu bytes\n",
              sizeof e->reader_dir - 1);
      return -EINVAL;
    }
    snprintf(e->reader_dir, sizeof e->reader_dir, "%s", cfg->store_url);
  } else if (cfg->data_dir != NULL) {
    rc = hw_store_open(loop, cfg->data_dir, &e->store, err, sizeof err);
    snprintf(e->reader_dir, sizeof e->reader_dir, "%s", cfg->data_dir);
    if (rc == -EBUSY) { /* another engine holds --data */
      fprintf(stderr, "hookwork: %s\n", err);
      return rc;
    }
    if (rc != 0) {
      fprintf(stderr, "hookwork: store: %s\n", err);
      return rc;
    }
  }
  rc = hw_hc_init(loop, &e->hc);
  if (rc != 0) {
    fprintf(stderr, "hookwork: http client: %s\n", uv_strerror(rc));
    return rc;
  }
  rc = hw_netpolicy_new(cfg->outbound_deny, (size_t) cfg->ndeny, &e->policy,
                        err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "hookwork: --outbound-deny: %s\n",
            rc == -EINVAL ? err : "out of memory");
    return rc;
  }
  hw_hc_set_policy(e->hc, e->policy);
  if (cfg->mode == HW_MODE_RUN)
    fd_budget(e);
  hw_hc_set_limits(e->hc, e->cfg.max_outbound, cfg->max_response_buffer);
  hw_hc_set_pool(e->hc, cfg->outbound_pool);
  if (hw_loopstat_init(&e->loopstat, loop) != 0)
    hw_log("engine", "no idle-time metric from libuv: loop iteration times are not measured");
  uv_check_init(loop, &e->check);
  uv_prepare_init(loop, &e->prepare);
  uv_idle_init(loop, &e->idle);
  uv_timer_init(loop, &e->tick);
  e->check.data = e->prepare.data = e->idle.data = e->tick.data = e;
  uv_check_start(&e->check, on_check);
  uv_prepare_start(&e->prepare, on_prepare);
  if (hw_lua_open(e) != 0)
    return -EINVAL;
  return 0;
}

static void set_public_base(hw_engine_t *e) {
  const char *host = e->listen_host;
  size_t n;
  if (e->cfg.public_url != NULL) {
    snprintf(e->public_base, sizeof e->public_base, "%s", e->cfg.public_url);
    n = strlen(e->public_base);
    while (n > 0 && e->public_base[n - 1] == '/')
      e->public_base[--n] = '\0';
    return;
  }
  if (strcmp(host, "0.0.0.0") == 0)
    host = "127.0.0.1";
  if (strchr(host, ':') != NULL)
    snprintf(e->public_base, sizeof e->public_base, "http://[%s]:%d", host,
             hw_http_server_port(e->web));
  else
    snprintf(e->public_base, sizeof e->public_base, "http://%s:%d", host,
             hw_http_server_port(e->web));
}

static int start_servers(hw_engine_t *e) {
  hw_http_limits_t lim = {e->cfg.max_body, e->cfg.read_timeout_ms, 60000,
                          e->cfg.max_connections, e->cfg.max_body_buffer};
  char host[256];
  int port, rc;

  rc = hw_http_server_start(e->loop, e->listen_host, e->listen_port, &lim,
                            web_request, e, &e->web);
  if (rc != 0) {
    hw_log("engine", "cannot listen on %s: %s", e->cfg.listen, uv_strerror(rc));
    return rc;
  }
  set_public_base(e);
  if (e->cfg.admin == NULL)
    return 0;
  if (hw_parse_hostport(e->cfg.admin, host, sizeof host, &port) != 0) {
    hw_log("engine", "--admin: expected HOST:PORT, got '%s'", e->cfg.admin);
    return -EINVAL;
  }
  lim.max_body = 1024 * 1024;
  lim.max_conns = ADMIN_CONNS;
  lim.max_body_total = 0; /* bounded by ADMIN_CONNS x max_body */
  rc = hw_http_server_start(e->loop, host, port, &lim, hw_admin_handle, e,
                            &e->admin);
  if (rc != 0)
    hw_log("engine", "cannot listen on %s: %s", e->cfg.admin, uv_strerror(rc));
  return rc;
}

static void watcher_cb(void *arg) {
  hw_engine_t *e = arg;
  if (!e->stopping)
    hw_lua_call(e, "rescan", 0, 0);
}

int hw_engine_serve(hw_engine_t *e) {
  int rc = start_servers(e);
  if (rc != 0)
    return rc;
  if (hw_lua_call(e, "start", 0, 0) != 0)
    return -EINVAL;
  rc = hw_watcher_start(e->loop, e->cfg.cycles_dir, 150, watcher_cb, e,
                        &e->watcher);
  if (rc != 0)
    hw_log("engine", "not watching %s: %s", e->cfg.cycles_dir, uv_strerror(rc));
  uv_signal_init(e->loop, &e->sigint);
  uv_signal_init(e->loop, &e->sigterm);
  e->sigint.data = e->sigterm.data = e;
  uv_signal_start(&e->sigint, on_signal, SIGINT);
  uv_signal_start(&e->sigterm, on_signal, SIGTERM);
  uv_timer_start(&e->tick, on_tick, HW_TICK_MS, HW_TICK_MS);
  /* the bound addresses and the public URL are different facts: a proxy
   * in front makes the second differ from the first */
  hw_log("engine", "listening on %s:%d (webhooks) and %s (admin); webhook "
         "URLs start with %s/hooks/", e->listen_host,
         hw_http_server_port(e->web), e->cfg.admin ? e->cfg.admin : "(none)",
         e->public_base);
  return 0;
}

/* Stop accepting at once; runs get until the deadline to finish or park
 * (what is left re-runs from its checkpoint after a restart). */
void hw_engine_stop(hw_engine_t *e) {
  if (e->stopping == 0) {
    e->stopping = 1;
    e->stop_deadline = hw_mono() + e->cfg.grace;
    if (e->web != NULL) {
      hw_http_server_close(e->web, NULL, NULL);
      e->web = NULL;
    }
    if (e->watcher != NULL) {
      hw_watcher_close(e->watcher);
      e->watcher = NULL;
    }
  }
  if (!uv_is_active((uv_handle_t *) &e->tick))
    uv_timer_start(&e->tick, on_tick, 0, HW_TICK_MS);
}

static void close_if(uv_handle_t *h) {
  if (h->loop != NULL && !uv_is_closing(h))
    uv_close(h, NULL);
}

/* Closes every loop handle the engine owns (the servers excepted), so the
 * loop can run dry; the store's writer keeps committing until freed. */
static void close_handles(hw_engine_t *e) {
  e->stopping = 2;
  if (e->store != NULL)
    hw_store_detach(e->store);
  hw_reader_detach(e->reader);
  if (e->hc != NULL) {
    hw_hc_close(e->hc);
    e->hc = NULL;
  }
  close_if((uv_handle_t *) &e->tick);
  close_if((uv_handle_t *) &e->sigint);
  close_if((uv_handle_t *) &e->sigterm);
  close_if((uv_handle_t *) &e->check);
  close_if((uv_handle_t *) &e->prepare);
  close_if((uv_handle_t *) &e->idle);
}

/* At the deadline no caller may be told 503 for a request that is then
 * committed: first the writer decides every write queued (blocking; this is
 * the end), then the runs waiting on their request's commit learn the
 * outcome (they answer 202 or 503 and, stopping, do not run), and only then
 * is whoever still waits answered. */
static void finish(hw_engine_t *e) {
  e->stopping = 2;
  if (e->store != NULL &&
      hw_store_settle(e->store, 30000) != 0)
    hw_log("engine", "the store did not settle within 30 s");
  for (int i = 0; i < 100 && e->ready_head != NULL; i++)
    hw_sched_drain(e);
  hw_lua_call(e, "shutdown", 0, 0); /* answers whoever still waits */
  if (e->admin != NULL) {
    hw_http_server_close(e->admin, NULL, NULL);
    e->admin = NULL;
  }
  close_handles(e);
}

void hw_engine_close_handles(hw_engine_t *e) { close_handles(e); }

void hw_engine_free(hw_engine_t *e) {
  if (e->store != NULL && hw_store_close(e->store) != 0)
    hw_log("engine", "store did not close cleanly");
  e->store = NULL;
  hw_reader_close(e->reader);
  e->reader = NULL;
  hw_hooks_free(e->hooks); /* (holds a reference in the Lua registry) */
  hw_rejects_free(e);
  e->hooks = NULL;
  hw_lua_close(e);
  hw_dedupe_free(e->dedupe);
  e->dedupe = NULL;
  hw_ipfilter_free(e->trusted);
  e->trusted = NULL;
  hw_netpolicy_free(e->policy); /* the client that used it is gone */
  e->policy = NULL;
}
