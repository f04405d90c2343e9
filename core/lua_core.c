/* lua_core: `hookwork.core`, the C functions the engine's Lua code calls:
 * spawning and waking runs, durable writes and commits, reads, outbound
 * HTTP, answering callers, tokens, IP filters and file access for the
 * cycle loader.  Never exposed to cycle code (the sandbox has no path to
 * it). */
#include "lua_api.h"
#include "log.h"
#include "scheduler.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENGINE(L) ((hw_engine_t *) lua_touserdata(L, lua_upvalueindex(1)))
#define IPF_MT "hookwork.ipfilter"

static const char wake_tag; /* r->wait marker for runs parked in core.wait */

/* A yielding core function may run only on a run's own coroutine. */
static hw_run_t *need_run(lua_State *L, const char *what) {
  hw_run_t *r = hw_sched_of(L);
  if (r == NULL || !lua_isyieldable(L))
    luaL_error(L, "%s: only inside a cycle run", what);
  return r;
}

/* --- runs ----------------------------------------------------------- */

static int l_core_spawn(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  if (hw_sched_spawn(ENGINE(L), L, n - 1) == NULL)
    return luaL_error(L, "spawn: out of memory");
  return 0;
}

static int l_core_wait(lua_State *L) {
  hw_run_t *r = need_run(L, "wait");
  r->wait = (void *) &wake_tag;
  return lua_yield(L, 0);
}

/* core.later(): the run goes to the back of the ready queue and goes on
 * once the runs ready now have had their turn.  A fire-and-forget run sends
 * its 202 and then steps aside, so every answer of one commit goes out
 * before any of their steps run (the last 202 of a group commit no longer
 * waits for the steps of the runs ahead of it). */
static int l_core_later(lua_State *L) {
  hw_run_t *r = need_run(L, "later");
  r->requeue = 1;
  return lua_yield(L, 0);
}

static int l_core_wake(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  hw_run_t *r = co ? hw_sched_of(co) : NULL;
  int n = lua_gettop(L) - 1;
  if (r == NULL || r->state != HW_RUN_WAITING || r->wait != &wake_tag)
    return luaL_error(L, "wake: that run is not waiting");
  lua_xmove(L, co, n);
  hw_sched_ready(r, n);
  return 0;
}

/* Values for a suspended run are built by a protected call on the main
 * state and moved over: out of memory there wakes the run with nothing
 * (its Lua side reports it) instead of panicking the engine. */
static void wake_with(hw_run_t *r, lua_CFunction build, void *arg) {
  lua_State *L = r->eng->L;
  int top = lua_gettop(L), n;
  lua_pushcfunction(L, build); /* light C function: no allocation */
  lua_pushlightuserdata(L, arg);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
    lua_settop(L, top);
    hw_sched_ready(r, 0);
    return;
  }
  n = lua_gettop(L) - top;
  lua_xmove(L, r->co, n);
  hw_sched_ready(r, n);
}

static int commit_failed(lua_State *L) {
  const char *reason = lua_touserdata(L, 1);
  lua_pushnil(L);
  lua_pushstring(L, reason ? reason : "the store could not commit");
  return 2;
}

static void commit_done(int status, const char *reason, void *arg) {
  hw_run_t *r = arg;
  if (status == 0) {
    lua_pushboolean(r->co, 1); /* no allocation */
    hw_sched_ready(r, 1);
  } else {
    wake_with(r, commit_failed, (void *) reason);
  }
}

/* core.commit([seq]) -> true | nil, reason.  With seq (from
 * core.write_req): waits for that request's write, which is committed or,
 * when its batch failed, dropped.  Without: waits until every write so far
 * is durable. */
static int l_core_commit(lua_State *L) {
  hw_run_t *r = need_run(L, "commit");
  hw_store_t *st = ENGINE(L)->store;
  int rc;
  if (st == NULL)
    return luaL_error(L, "store: not open");
  if (lua_isnoneornil(L, 1))
    rc = hw_store_flush(st, commit_done, r);
  else
    rc = hw_store_await(st, (uint64_t) luaL_checkinteger(L, 1), commit_done, r);
  if (rc == -EINVAL)
    return luaL_error(L, "commit: no such write");
  if (rc != 0)
    return luaL_error(L, "commit: out of memory");
  r->wait = r;
  return lua_yield(L, 0);
}

/* core.store_refusal() -> nil | reason: why a new request must be refused
 * now (commits failing, or too many writes uncommitted). */
static int l_core_store_refusal(lua_State *L) {
  char why[256];
  hw_store_t *st = ENGINE(L)->store;
  if (st == NULL || !hw_store_refusal(st, why, sizeof why))
    return 0;
  lua_pushstring(L, why);
  return 1;
}

static int l_core_seal(lua_State *L) {
  if (ENGINE(L)->store != NULL)
    hw_store_seal(ENGINE(L)->store);
  return 0;
}

/* core.progress() -> written, done: write sequence numbers (see
 * hw_store_progress); 0, 0 with no store. */
static int l_core_progress(lua_State *L) {
  uint64_t w = 0, d = 0;
  if (ENGINE(L)->store != NULL)
    hw_store_progress(ENGINE(L)->store, &w, &d);
  lua_pushinteger(L, (lua_Integer) w);
  lua_pushinteger(L, (lua_Integer) d);
  return 2;
}

/* --- store ---------------------------------------------------------- */

static const char *const id_kinds[] = {"tx", "job", "hist", "early", NULL};

/* core.next_id(kind) -> the next id of "tx", "job", "hist" or "early" */
static int l_core_next_id(lua_State *L) {
  hw_store_t *st = ENGINE(L)->store;
  int kind = luaL_checkoption(L, 1, NULL, id_kinds);
  int64_t id;
  if (st == NULL)
    return luaL_error(L, "store: not open");
  if (hw_store_next_id(st, kind, &id) != 0)
    return luaL_error(L, "store: cannot number a new %s", id_kinds[kind]);
  lua_pushinteger(L, (lua_Integer) id);
  return 1;
}

/* core.last_ids() -> { tx =, job =, hist =, early = }: the largest ids
 * handed out so far (at start: the largest stored) */
static int l_core_last_ids(lua_State *L) {
  hw_store_t *st = ENGINE(L)->store;
  int k;
  lua_createtable(L, 0, HW_ID_KINDS);
  for (k = 0; k < HW_ID_KINDS; k++) {
    lua_pushinteger(L, st ? (lua_Integer) hw_store_last_id(st, k) : 0);
    lua_setfield(L, -2, id_kinds[k]);
  }
  return 1;
}

static int to_vals(lua_State *L, int from, hw_val_t *v, int max) {
  int i, n = lua_gettop(L) - from + 1;
  if (n > max)
    return luaL_error(L, "store: too many values");
  for (i = 0; i < n; i++) {
    int idx = from + i;
    memset(&v[i], 0, sizeof v[i]);
    switch (lua_type(L, idx)) {
    case LUA_TNIL: v[i].type = HW_V_NULL; break;
    case LUA_TBOOLEAN:
      v[i].type = HW_V_INT;
      v[i].i = lua_toboolean(L, idx);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        v[i].type = HW_V_INT;
        v[i].i = lua_tointeger(L, idx);
      } else {
        v[i].type = HW_V_REAL;
        v[i].d = lua_tonumber(L, idx);
      }
      break;
    case LUA_TSTRING:
      v[i].type = HW_V_TEXT;
      v[i].s = lua_tolstring(L, idx, &v[i].n);
      break;
    default: return luaL_error(L, "store: value %d has an unstorable type", i + 1);
    }
  }
  return n;
}

/* Statement ids by name, cached in a registry table: every write names its
 * statement, and a hash lookup beats walking the statement list. */
static int stmt_arg(lua_State *L, int write) {
  const char *name = luaL_checkstring(L, 1);
  int id;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, "hookwork.stmt_ids");
  if (lua_getfield(L, -1, name) == LUA_TNUMBER) {
    id = (int) lua_tointeger(L, -1);
  } else {
    id = hw_store_stmt_id(name);
    lua_pushinteger(L, id);
    lua_setfield(L, -3, name);
  }
  lua_pop(L, 2);
  if (id < 0 || hw_store_stmt_is_write(id) != write)
    return luaL_error(L, "store: no %s statement '%s'", write ? "write" : "query",
                      name);
  return id;
}

static int store_args(lua_State *L, int id, hw_val_t *v) {
  int n = to_vals(L, 2, v, 12);
  if (ENGINE(L)->store == NULL)
    return luaL_error(L, "store: not open");
  if (n != hw_store_stmt_nparams(id))
    return luaL_error(L, "store: statement '%s' takes %d values, got %d",
                      lua_tostring(L, 1), hw_store_stmt_nparams(id), n);
  return n;
}

/* core.write(stmt, ...): a write kept until it commits. */
static int l_core_write(lua_State *L) {
  hw_val_t v[12];
  int id = stmt_arg(L, 1);
  int n = store_args(L, id, v);
  if (hw_store_write(ENGINE(L)->store, id, v, n) != 0)
    return luaL_error(L, "store: cannot queue write");
  return 0;
}

/* core.write_req(stmt, ...) -> seq: the write that makes a request durable;
 * dropped if its batch fails (core.commit(seq) tells). */
static int l_core_write_req(lua_State *L) {
  hw_val_t v[12];
  uint64_t seq;
  int id = stmt_arg(L, 1);
  int n = store_args(L, id, v);
  if (hw_store_write_req(ENGINE(L)->store, id, v, n, &seq) != 0)
    return luaL_error(L, "store: cannot queue write");
  lua_pushinteger(L, (lua_Integer) seq);
  return 1;
}

static int push_row(int nc, const hw_val_t *c, const char *const *names,
                    void *arg) {
  lua_State *L = arg;
  int i;
  lua_createtable(L, 0, nc);
  for (i = 0; i < nc; i++) {
    switch (c[i].type) {
    case HW_V_INT: lua_pushinteger(L, c[i].i); break;
    case HW_V_REAL: lua_pushnumber(L, c[i].d); break;
    case HW_V_TEXT: lua_pushlstring(L, c[i].s, c[i].n); break;
    default: continue;
    }
    lua_setfield(L, -2, names[i]);
  }
  lua_rawseti(L, -2, (lua_Integer) lua_rawlen(L, -2) + 1);
  return 0;
}

static int l_core_query(lua_State *L) {
  hw_val_t v[12];
  int id = stmt_arg(L, 0);
  int n = store_args(L, id, v);
  lua_newtable(L);
  if (hw_store_query(ENGINE(L)->store, id, v, n, push_row, L) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, hw_store_errmsg(ENGINE(L)->store));
    return 2;
  }
  return 1;
}

/* core.aquery(sql, ...) -> rows | nil, message: a read on the reader
 * thread (admin listings, counts, searches); the run yields meanwhile, so
 * the loop keeps serving webhooks. */
static void aquery_done(int status, hw_reader_res_t *res, void *arg) {
  hw_run_t *r = arg;
  int i, j;
  r->wait = NULL;
  if (status != 0) {
    lua_pushnil(r->co);
    lua_pushstring(r->co, res->errmsg);
    hw_sched_ready(r, 2);
    return;
  }
  lua_createtable(r->co, res->nrows, 0);
  for (i = 0; i < res->nrows; i++) {
    lua_createtable(r->co, 0, res->ncols);
    for (j = 0; j < res->ncols; j++) {
      const hw_val_t *v = &res->vals[i * res->ncols + j];
      switch (v->type) {
      case HW_V_INT: lua_pushinteger(r->co, v->i); break;
      case HW_V_REAL: lua_pushnumber(r->co, v->d); break;
      case HW_V_TEXT: lua_pushlstring(r->co, v->s, v->n); break;
      default: continue;
      }
      lua_setfield(r->co, -2, res->names[j]);
    }
    lua_rawseti(r->co, -2, i + 1);
  }
  hw_sched_ready(r, 1);
}

static int l_core_aquery(lua_State *L) {
  hw_run_t *r = need_run(L, "aquery");
  hw_engine_t *e = ENGINE(L);
  const char *sql = luaL_checkstring(L, 1);
  hw_val_t v[16];
  char err[512];
  int n = to_vals(L, 2, v, 16);
  void *q;
  if (e->reader == NULL) {
    if (e->reader_dir[0] == '\0')
      return luaL_error(L, "store: not open");
    if (hw_reader_open(e->loop, e->reader_dir, &e->reader, err, sizeof err) != 0)
      return luaL_error(L, "store reader: %s", err);
  }
  q = hw_reader_query(e->reader, sql, v, n, aquery_done, r);
  if (q == NULL)
    return luaL_error(L, "aquery: out of memory");
  r->wait = q; /* runs are freed only after the reader is closed (engine
                  teardown), so its callback never sees a freed run */
  return lua_yield(L, 0);
}

/* --- outbound HTTP -------------------------------------------------- */

static void push_response(lua_State *co, const hw_hc_response_t *res) {
  int i;
  lua_createtable(co, 0, 8);
  lua_pushinteger(co, res->status);
  lua_setfield(co, -2, "status");
  lua_pushlstring(co, res->body ? res->body : "", res->body ? res->body_len : 0);
  lua_setfield(co, -2, "body");
  lua_createtable(co, 0, res->nheaders);
  for (i = 0; i < res->nheaders; i++) {
    lua_pushstring(co, res->headers[i].value);
    lua_setfield(co, -2, res->headers[i].name);
  }
  lua_setfield(co, -2, "headers");
  lua_createtable(co, res->nattempts, 0);
  for (i = 0; i < res->nattempts; i++) {
    lua_createtable(co, 0, 3);
    lua_pushinteger(co, res->attempts[i].status);
    lua_setfield(co, -2, "status");
    lua_pushnumber(co, res->attempts[i].seconds);
    lua_setfield(co, -2, "seconds");
    if (res->attempts[i].error[0]) {
      lua_pushstring(co, res->attempts[i].error);
      lua_setfield(co, -2, "error");
    }
    lua_rawseti(co, -2, i + 1);
  }
  lua_setfield(co, -2, "attempts");
  lua_pushnumber(co, res->seconds);
  lua_setfield(co, -2, "seconds");
  if (res->error) {
    lua_pushstring(co, res->errmsg);
    lua_setfield(co, -2, "error");
  }
}

static int build_response(lua_State *L) {
  push_response(L, lua_touserdata(L, 1));
  return 1;
}

static void http_done(hw_hc_response_t *res, void *arg) {
  hw_run_t *r = arg;
  if (r->eng->stopping == 2) { /* torn down: the job re-runs after restart */
    hw_sched_ready(r, 0);
    return;
  }
  wake_with(r, build_response, res);
}

static const char **header_list(lua_State *L, int idx) {
  size_t i, n;
  const char **h;
  if (lua_isnoneornil(L, idx))
    return NULL;
  luaL_checktype(L, idx, LUA_TTABLE);
  n = lua_rawlen(L, idx);
  h = lua_newuserdatauv(L, (n + 1) * sizeof *h, 0); /* freed by the GC */
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (lua_Integer) i + 1);
    h[i] = lua_tostring(L, -1); /* strings stay alive in the table */
    lua_pop(L, 1);
  }
  h[n] = NULL;
  return h;
}

static int l_core_http(lua_State *L) {
  hw_run_t *r = need_run(L, "http");
  hw_hc_request_t q;
  hw_hc_xfer_t *x;
  int rc;

  luaL_checktype(L, 1, LUA_TTABLE);
  memset(&q, 0, sizeof q);
  lua_getfield(L, 1, "method");
  q.method = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "url");
  q.url = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "body");
  q.body = lua_tolstring(L, -1, &q.body_len);
  lua_getfield(L, 1, "timeout");
  q.timeout = lua_tonumber(L, -1);
  lua_getfield(L, 1, "retries");
  q.retries = (int) lua_tointeger(L, -1);
  lua_getfield(L, 1, "follow"); /* hops; true (the old form) means 5 */
  if (lua_isboolean(L, -1) || lua_isnil(L, -1))
    q.follow = 5 * lua_toboolean(L, -1);
  else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0)
    q.follow = lua_tointeger(L, -1) > 20 ? 20 : (int) lua_tointeger(L, -1);
  else
    return luaL_error(L, "%s %s: follow: expected a number of redirects "
                      "(0 to 20) or true, got %s", q.method, q.url,
                      luaL_tolstring(L, -1, NULL));
  lua_getfield(L, 1, "insecure");
  q.insecure = lua_toboolean(L, -1);
  lua_getfield(L, 1, "allow_private");
  q.allow_private = lua_toboolean(L, -1);
  lua_getfield(L, 1, "origin_headers");
  q.origin_headers = (int) lua_tointeger(L, -1);
  lua_getfield(L, 1, "max_response");
  if (lua_tonumber(L, -1) > (lua_Number) ENGINE(L)->cfg.max_response)
    return luaL_error(L, "%s %s: max_response %s is over the engine's limit "
                      "of %I bytes (HOOKWORK_MAX_RESPONSE)", q.method, q.url,
                      lua_tostring(L, -1),
                      (lua_Integer) ENGINE(L)->cfg.max_response);
  q.max_response = (size_t) lua_tointeger(L, -1);
  lua_getfield(L, 1, "headers");
  q.headers = header_list(L, lua_gettop(L));
  rc = hw_hc_start(ENGINE(L)->hc, &q, http_done, r, &x);
  if (rc != 0)
    return luaL_error(L, "%s %s: cannot start request (%s)", q.method, q.url,
                      uv_strerror(rc));
  r->wait = x;
  return lua_yield(L, 0);
}

/* --- callers -------------------------------------------------------- */

static int l_core_answer(lua_State *L) {
  hw_http_req_t *req = lua_touserdata(L, 1);
  int status = (int) luaL_checkinteger(L, 2);
  const char *ctype = luaL_optstring(L, 3, NULL);
  size_t len = 0;
  const char *body = luaL_optlstring(L, 5, "", &len);
  const char **h = header_list(L, 4);
  if (req == NULL)
    return luaL_error(L, "answer: no request");
  hw_http_respond(req, status, ctype, h, body, len);
  return 0;
}



void hw_lua_core_test_fns(lua_State *L, hw_engine_t *e);

/* --- utilities ------------------------------------------------------- */

/* core.mono() -> seconds on the monotonic clock (any origin): what waits
 * are measured with, so a wall-clock step does not fire or stall them. */
static int l_core_mono(lua_State *L) {
  lua_pushnumber(L, (lua_Number) uv_hrtime() / 1e9);
  return 1;
}

static int l_core_now(lua_State *L) {
  lua_pushnumber(L, hw_now());
  return 1;
}

/* 18 random bytes from the OS: 144 bits, 24 URL-safe characters. */
static int l_core_token(lua_State *L) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  unsigned char raw[18];
  char out[25];
  int i, j;
  if (uv_random(NULL, NULL, raw, sizeof raw, 0, NULL) != 0)
    return luaL_error(L, "token: no randomness from the OS");
  for (i = 0, j = 0; i < 18; i += 3) {
    unsigned v = (unsigned) raw[i] << 16 | (unsigned) raw[i + 1] << 8 | raw[i + 2];
    out[j++] = b64[(v >> 18) & 63];
    out[j++] = b64[(v >> 12) & 63];
    out[j++] = b64[(v >> 6) & 63];
    out[j++] = b64[v & 63];
  }
  out[j] = '\0';
  lua_pushstring(L, out);
  return 1;
}

static int l_ipf_gc(lua_State *L) {
  hw_ipfilter_t **p = luaL_checkudata(L, 1, IPF_MT);
  hw_ipfilter_free(*p);
  *p = NULL;
  return 0;
}

/* core.ipfilter({entries}) -> filter | nil, "invalid address 'X'" */
static int l_core_ipfilter(lua_State *L) {
  size_t i, n;
  const char **list;
  hw_ipfilter_t **ud;
  char err[256];
  int rc;

  luaL_checktype(L, 1, LUA_TTABLE);
  n = lua_rawlen(L, 1);
  list = lua_newuserdatauv(L, (n + 1) * sizeof *list, 0);
  for (i = 0; i < n; i++) {
    size_t len;
    lua_rawgeti(L, 1, (lua_Integer) i + 1);
    list[i] = lua_tolstring(L, -1, &len);
    if (list[i] == NULL)
      return luaL_error(L, "allowed_ips: entry %d is not a string", (int) i + 1);
    if (strlen(list[i]) != len) { /* C would read "1.2.3.4\0junk" as 1.2.3.4 */
      lua_pushnil(L);
      lua_pushfstring(L, "invalid address in entry %d: it holds a NUL byte",
                      (int) i + 1);
      return 2;
    }
    lua_pop(L, 1);
  }
  ud = lua_newuserdatauv(L, sizeof *ud, 0);
  *ud = NULL;
  luaL_setmetatable(L, IPF_MT);
  rc = hw_ipfilter_parse(list, n, ud, err, sizeof err);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, rc == -EINVAL ? err : "out of memory");
    return 2;
  }
  return 1;
}

static int l_core_ip_match(lua_State *L) {
  hw_ipfilter_t **p = luaL_checkudata(L, 1, IPF_MT);
  const char *ip = luaL_checkstring(L, 2);
  lua_pushboolean(L, *p != NULL && hw_ipfilter_match(*p, ip));
  return 1;
}

static int l_core_log(lua_State *L) {
  hw_log(luaL_checkstring(L, 1), "%s", luaL_checkstring(L, 2));
  return 0;
}

/* core.fatal(msg): logs msg and ends the process at once, status 1,
 * committing nothing more: a node whose work another node has taken over
 * (nodes.lua) must not finish its runs too. */
static int l_core_fatal(lua_State *L) {
  hw_log("nodes", "%s", luaL_checkstring(L, 1));
  fflush(stderr);
  _exit(1);
  return 0;
}

/* core.listdir(dir) -> { {name=, mtime=, size=}, ... } for regular files */
static int l_core_listdir(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  uv_fs_t req;
  uv_dirent_t ent;
  int rc, n = 0;
  char path[4096];
  struct stat sb;

  rc = uv_fs_scandir(NULL, &req, dir, 0, NULL);
  if (rc < 0) {
    uv_fs_req_cleanup(&req);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", dir, uv_strerror(rc));
    return 2;
  }
  lua_newtable(L);
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    snprintf(path, sizeof path, "%s/%s", dir, ent.name);
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
      continue;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, ent.name);
    lua_setfield(L, -2, "name");
    lua_pushnumber(L, (double) sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec / 1e9);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, (lua_Integer) sb.st_size);
    lua_setfield(L, -2, "size");
    lua_rawseti(L, -2, ++n);
  }
  uv_fs_req_cleanup(&req);
  return 1;
}

static int l_core_readfile(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  FILE *f = fopen(path, "rb");
  luaL_Buffer b;
  char buf[8192];
  size_t n;
  if (f == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  luaL_buffinit(L, &b);
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    luaL_addlstring(&b, buf, n);
  fclose(f);
  luaL_pushresult(&b);
  return 1;
}

/* core.where(level) -> "source:line" of a Lua function up the stack, so the
 * cycle constructors can name the line a step was written on. */
static int l_core_where(lua_State *L) {
  lua_Debug ar;
  int level = (int) luaL_optinteger(L, 1, 2);
  if (lua_getstack(L, level, &ar) && lua_getinfo(L, "Sl", &ar) &&
      ar.currentline > 0) {
    lua_pushfstring(L, "%s:%d", ar.short_src, ar.currentline);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

/* core.store_pending() -> writes not yet committed (recovery paces itself
 * by it, so the backlog never queues ahead of new requests' commits) */
static int l_core_store_pending(lua_State *L) {
  hw_store_t *st = ENGINE(L)->store;
  lua_pushinteger(L, st ? (lua_Integer) hw_store_pending(st) : 0);
  return 1;
}

/* core.stopping() -> 0 serving, 1 draining, 2 at the shutdown deadline */
static int l_core_stopping(lua_State *L) {
  lua_pushinteger(L, ENGINE(L)->stopping);
  return 1;
}

/* A positive count from the environment, or `def` when unset or not one. */
static lua_Integer env_count(const char *name, lua_Integer def) {
  const char *v = getenv(name);
  char *end;
  long long n;
  if (v == NULL || *v == '\0')
    return def;
  n = strtoll(v, &end, 10);
  return (*end == '\0' && n > 0) ? (lua_Integer) n : def;
}

static int l_core_config(lua_State *L) {
  hw_engine_t *e = ENGINE(L);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, e->cfg.cycles_dir);
  lua_setfield(L, -2, "cycles_dir");
  lua_pushstring(L, e->cfg.data_dir ? e->cfg.data_dir : "");
  lua_setfield(L, -2, "data_dir");
  /* "sqlite" or "postgres"; node and lease matter with several nodes */
  lua_pushstring(L, e->cfg.store_url ? "postgres" : "sqlite");
  lua_setfield(L, -2, "store");
  lua_pushstring(L, e->cfg.node ? e->cfg.node : "");
  lua_setfield(L, -2, "node");
  lua_pushnumber(L, e->cfg.lease);
  lua_setfield(L, -2, "lease");
  lua_pushstring(L, e->public_base);
  lua_setfield(L, -2, "public_base");
  lua_pushinteger(L, e->cfg.mode);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer) e->cfg.max_body);
  lua_setfield(L, -2, "max_body");
  lua_pushstring(L, HW_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, e->nruns);
  lua_setfield(L, -2, "runs");
  lua_pushinteger(L, e->stopping);
  lua_setfield(L, -2, "stopping");
  /* bounds of the waiting machinery (docs/cycles.md): runs accepted and
   * not ended per transaction, requests kept per match value */
  lua_pushinteger(L, env_count("HOOKWORK_MAX_BACKLOG", 1000));
  lua_setfield(L, -2, "max_backlog");
  lua_pushinteger(L, env_count("HOOKWORK_MAX_KEPT", 1000));
  lua_setfield(L, -2, "max_kept");
  return 1;
}

/* core.stats(): the engine's own counters for /metrics: Lua allocations
 * (blocks allocated or grown, ever), the Lua heap, and the loop's work per
 * iteration (loopstat.h): {allocs, heap, loop_n, loop_busy, loop_max,
 * loop_le = {bounds...}, loop_counts = {cumulative counts...}, and the same
 * in the loop thread's CPU time: loop_cpu, loop_cpu_max, loop_cpu_counts}. */
static int l_core_stats(lua_State *L) {
  hw_engine_t *e = ENGINE(L);
  const hw_loopstat_t *ls = &e->loopstat;
  uint64_t cum = 0;
  int i;
  lua_createtable(L, 0, 10);
  lua_pushinteger(L, (lua_Integer) e->mem.allocs);
  lua_setfield(L, -2, "allocs");
  lua_pushinteger(L, (lua_Integer) e->mem.total);
  lua_setfield(L, -2, "heap");
  lua_pushinteger(L, (lua_Integer) ls->n);
  lua_setfield(L, -2, "loop_n");
  lua_pushnumber(L, (double) ls->busy_ns / 1e9);
  lua_setfield(L, -2, "loop_busy");
  lua_pushnumber(L, (double) ls->max_ns / 1e9);
  lua_setfield(L, -2, "loop_max");
  lua_createtable(L, HW_LOOPSTAT_NB, 0);
  lua_createtable(L, HW_LOOPSTAT_NB, 0);
  for (i = 0; i < HW_LOOPSTAT_NB; i++) {
    cum += ls->bucket[i];
    lua_pushnumber(L, hw_loopstat_le[i]);
    lua_rawseti(L, -3, i + 1);
    lua_pushinteger(L, (lua_Integer) cum);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -3, "loop_counts");
  lua_setfield(L, -2, "loop_le");
  lua_pushnumber(L, (double) ls->cpu_ns / 1e9);
  lua_setfield(L, -2, "loop_cpu");
  lua_pushnumber(L, (double) ls->cpu_max_ns / 1e9);
  lua_setfield(L, -2, "loop_cpu_max");
  cum = 0;
  lua_createtable(L, HW_LOOPSTAT_NB, 0);
  for (i = 0; i < HW_LOOPSTAT_NB; i++) {
    cum += ls->cpu_bucket[i];
    lua_pushinteger(L, (lua_Integer) cum);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "loop_cpu_counts");
  return 1;
}

/* core.out(s) / core.errout(s): raw stdout / stderr (check and test). */
static int l_core_out(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  fwrite(s, 1, n, stdout);
  fflush(stdout);
  return 0;
}

static int l_core_errout(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  fwrite(s, 1, n, stderr);
  return 0;
}

static const luaL_Reg core_fns[] = {
  {"out", l_core_out}, {"errout", l_core_errout}, {"seal", l_core_seal},
  {"spawn", l_core_spawn}, {"wait", l_core_wait}, {"wake", l_core_wake},
  {"later", l_core_later},
  {"commit", l_core_commit}, {"write_req", l_core_write_req},
  {"store_refusal", l_core_store_refusal}, {"stopping", l_core_stopping},
  {"store_pending", l_core_store_pending},
  {"progress", l_core_progress},
  {"next_id", l_core_next_id}, {"last_ids", l_core_last_ids},
  {"write", l_core_write},
  {"query", l_core_query}, {"aquery", l_core_aquery}, {"http", l_core_http},
  {"answer", l_core_answer},
  {"now", l_core_now}, {"mono", l_core_mono}, {"token", l_core_token},
  {"ipfilter", l_core_ipfilter}, {"ip_match", l_core_ip_match},
  {"log", l_core_log}, {"fatal", l_core_fatal},
  {"listdir", l_core_listdir},
  {"readfile", l_core_readfile}, {"where", l_core_where},
  {"config", l_core_config},
  {"stats", l_core_stats},
  {NULL, NULL}
};

/* Pushes the core module table; every function sees the engine as its
 * upvalue. */
int hw_lua_core_open(lua_State *L, hw_engine_t *e) {
  luaL_newmetatable(L, IPF_MT);
  lua_pushcfunction(L, l_ipf_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlibtable(L, core_fns);
  lua_pushlightuserdata(L, e);
  luaL_setfuncs(L, core_fns, 1);
  hw_lua_core_test_fns(L, e);
  return 1;
}

/* --- test-harness and check support ----------------------------------- */

static int l_core_store_open(lua_State *L) {
  hw_engine_t *e = ENGINE(L);
  const char *dir = luaL_checkstring(L, 1);
  char err[512];
  while (e->store != NULL && hw_store_pending(e->store) > 0)
    uv_run(e->loop, UV_RUN_ONCE); /* let the batch in flight land */
  if (e->store != NULL) {
    hw_store_close(e->store);
    e->store = NULL;
  }
  hw_reader_close(e->reader); /* reopened on first use, on the new file */
  e->reader = NULL;
  snprintf(e->reader_dir, sizeof e->reader_dir, "%s", dir);
  if (hw_store_open(e->loop, dir, &e->store, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* One loop iteration; only for the modes that drive the loop from Lua
 * (test), never from inside a loop callback. */
static int l_core_loop_once(lua_State *L) {
  hw_engine_t *e = ENGINE(L);
  if (e->cfg.mode != HW_MODE_TEST)
    return luaL_error(L, "loop_once: only in test mode");
  uv_run(e->loop, UV_RUN_ONCE); /* the idle handle keeps it from blocking
                                   while runs are ready; the tick bounds it */
  return 0;
}

static int l_core_mkdtemp(lua_State *L) {
  char tmpl[] = "/tmp/hookwork-test-XXXXXX";
  if (mkdtemp(tmpl) == NULL)
    return luaL_error(L, "mkdtemp: %s", strerror(errno));
  lua_pushstring(L, tmpl);
  return 1;
}

static int rm_one(const char *path, const struct stat *sb, int flag,
                  struct FTW *ftw) {
  (void) sb;
  (void) flag;
  (void) ftw;
  return remove(path);
}

static int l_core_rmtree(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  if (strncmp(dir, "/tmp/hookwork-test-", 19) != 0)
    return luaL_error(L, "rmtree: refusing %s", dir);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

/* core.find(path, suffix) -> sorted list of files under path (a file or a
 * directory, recursively) whose names end in suffix. */
static int find_add(lua_State *L, const char *path, const char *suffix) {
  size_t n = strlen(path), m = strlen(suffix);
  if (n >= m && strcmp(path + n - m, suffix) == 0) {
    lua_pushstring(L, path);
    lua_rawseti(L, -2, (lua_Integer) lua_rawlen(L, -2) + 1);
  }
  return 0;
}

static void find_walk(lua_State *L, const char *path, const char *suffix,
                      int depth) {
  struct stat sb;
  uv_fs_t req;
  uv_dirent_t ent;
  char sub[4096];
  if (stat(path, &sb) != 0 || depth > 16)
    return;
  if (!S_ISDIR(sb.st_mode)) {
    find_add(L, path, suffix);
    return;
  }
  if (uv_fs_scandir(NULL, &req, path, 0, NULL) < 0) {
    uv_fs_req_cleanup(&req);
    return;
  }
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    if (ent.name[0] == '.')
      continue;
    snprintf(sub, sizeof sub, "%s/%s", path, ent.name);
    find_walk(L, sub, suffix, depth + 1);
  }
  uv_fs_req_cleanup(&req);
}

static int l_core_find(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *suffix = luaL_checkstring(L, 2);
  lua_newtable(L);
  find_walk(L, path, suffix, 0);
  return 1;
}

static const luaL_Reg core_test_fns[] = {
  {"store_open", l_core_store_open}, {"loop_once", l_core_loop_once},
  {"mkdtemp", l_core_mkdtemp}, {"rmtree", l_core_rmtree},
  {"find", l_core_find}, {NULL, NULL}
};

void hw_lua_core_test_fns(lua_State *L, hw_engine_t *e) {
  lua_pushlightuserdata(L, e);
  luaL_setfuncs(L, core_test_fns, 1);
}
