/* lua_door: `hookwork.door` (see lua_door.h).  Load-time functions raise
 * nothing for bad options: they return nil, message and verify.lua names
 * the error; checks never raise. */
#include "lua_door.h"

#include <errno.h>
#include <lauxlib.h>
#include <string.h>

#define SCHEME_MT "hookwork.door.scheme"
#define LIST_MT "hookwork.door.list"
#define DSPEC_MT "hookwork.door.dedupe"

typedef struct {
  hw_verify_scheme_t *s;
} scheme_ud;
typedef struct {
  hw_verify_t *v;
} list_ud;
typedef struct {
  hw_dedupe_spec_t *sp;
} dspec_ud;

static hw_engine_t *ENG(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* --- the request view over a Lua headers table ------------------------ */

typedef struct {
  lua_State *L;
  int idx;
} lview_t;

static const char *lua_header(void *ctx, const char *name, size_t *len) {
  lview_t *v = ctx;
  const char *s = NULL;
  /* raw: a metatable cycle code set on the headers (an hmac payload
   * function gets them) never runs here, outside any step's budget */
  lua_pushstring(v->L, name);
  if (lua_rawget(v->L, v->idx) == LUA_TSTRING)
    s = lua_tolstring(v->L, -1, len); /* anchored in the table */
  lua_pop(v->L, 1);
  return s;
}

static void view_of(lua_State *L, int hidx, int bidx, lview_t *lv,
                    hw_req_view_t *r) {
  luaL_checktype(L, hidx, LUA_TTABLE);
  lv->L = L;
  lv->idx = lua_absindex(L, hidx);
  memset(r, 0, sizeof *r);
  r->body = luaL_optlstring(L, bidx, "", &r->body_len);
  r->header = lua_header;
  r->ctx = lv;
}

/* --- schemes ------------------------------------------------------------ */

static int str_list(lua_State *L, int t, const char *field, const char **out,
                    size_t *lens, int max) {
  int n = 0;
  if (lua_getfield(L, t, field) == LUA_TTABLE) {
    for (lua_Integer i = 1; n < max; i++) {
      if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
        lua_pop(L, 1);
        break;
      }
      out[n] = lua_tolstring(L, -1, lens ? &lens[n] : NULL);
      lua_pop(L, 1); /* anchored in the list */
      n++;
    }
  }
  lua_pop(L, 1);
  return n;
}

static const char *opt_str(lua_State *L, int t, const char *field) {
  const char *s = NULL;
  if (lua_getfield(L, t, field) == LUA_TSTRING)
    s = lua_tostring(L, -1);
  lua_pop(L, 1);
  return s;
}

static double opt_num(lua_State *L, int t, const char *field, double dflt) {
  double v = dflt;
  if (lua_getfield(L, t, field) == LUA_TNUMBER)
    v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* door.scheme(name, spec) -> scheme | nil, message.  spec holds lists
 * `secrets`, `pems`, `algorithms` and the scheme's other options, their
 * shapes already checked by verify.lua. */
static int l_door_scheme(lua_State *L) {
  static const char *const names[] = {"standard_webhooks",
                                      "github",
                                      "stripe",
                                      "shopify",
                                      "slack",
                                      "hmac",
                                      "basic",
                                      "bearer",
                                      "header",
                                      "jwt",
                                      NULL};
  hw_verify_spec_t sp;
  char err[256];
  scheme_ud *u;
  int rc;
  memset(&sp, 0, sizeof sp);
  sp.scheme = luaL_checkoption(L, 1, NULL, names);
  luaL_checktype(L, 2, LUA_TTABLE);
  sp.nsecret = str_list(L, 2, "secrets", sp.secret, sp.secret_len,
                        HW_VERIFY_MAX_SECRETS);
  sp.npem = str_list(L, 2, "pems", sp.pem, sp.pem_len, HW_VERIFY_MAX_SECRETS);
  sp.nalgs = str_list(L, 2, "algorithms", sp.algs, NULL, 5);
  sp.tolerance = opt_num(L, 2, "tolerance", 300);
  sp.leeway = opt_num(L, 2, "leeway", 0);
  sp.header = opt_str(L, 2, "header");
  sp.algorithm = opt_str(L, 2, "algorithm");
  sp.encoding = opt_str(L, 2, "encoding");
  sp.prefix = opt_str(L, 2, "prefix");
  sp.user = opt_str(L, 2, "user");
  sp.audience = opt_str(L, 2, "audience");
  sp.issuer = opt_str(L, 2, "issuer");
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = NULL;
  luaL_setmetatable(L, SCHEME_MT);
  if ((rc = hw_verify_scheme_new(&sp, &u->s, err, sizeof err)) != 0) {
    if (rc == -ENOMEM)
      return luaL_error(L, "not enough memory");
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int l_scheme_gc(lua_State *L) {
  scheme_ud *u = luaL_checkudata(L, 1, SCHEME_MT);
  hw_verify_scheme_free(u->s);
  u->s = NULL;
  return 0;
}

static hw_verify_scheme_t *check_scheme(lua_State *L, int idx) {
  scheme_ud *u = luaL_checkudata(L, idx, SCHEME_MT);
  luaL_argcheck(L, u->s != NULL, idx, "scheme freed");
  return u->s;
}

/* door.list({scheme, ...}) -> list: one C list (any passing is enough). */
static int l_door_list(lua_State *L) {
  hw_verify_scheme_t *s[64];
  int n = 0;
  list_ud *u;
  luaL_checktype(L, 1, LUA_TTABLE);
  for (lua_Integer i = 1; lua_rawgeti(L, 1, i) != LUA_TNIL; i++) {
    luaL_argcheck(L, n < 64, 1, "at most 64 schemes");
    s[n++] = check_scheme(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  luaL_argcheck(L, n > 0, 1, "no schemes");
  u = lua_newuserdatauv(L, sizeof *u, 0);
  u->v = NULL;
  luaL_setmetatable(L, LIST_MT);
  for (int i = 0; i < n; i++)
    hw_verify_scheme_retain(s[i]);
  if (hw_verify_new(s, n, &u->v) != 0)
    return luaL_error(L, "not enough memory");
  return 1;
}

static int l_list_gc(lua_State *L) {
  list_ud *u = luaL_checkudata(L, 1, LIST_MT);
  hw_verify_release(u->v);
  u->v = NULL;
  return 0;
}

/* door.check(list, headers, body, now) -> nothing when it passes, else
 * message, reason, challenge */
static int l_door_check(lua_State *L) {
  list_ud *u = luaL_checkudata(L, 1, LIST_MT);
  double now = luaL_checknumber(L, 4);
  hw_req_view_t r;
  lview_t lv;
  hw_verify_result_t res;
  view_of(L, 2, 3, &lv, &r);
  if (hw_verify_check(u->v, &r, now, &res) == 0)
    return 0;
  lua_pushstring(L, res.message);
  lua_pushstring(L, res.reason);
  if (res.challenge)
    lua_pushstring(L, res.challenge);
  else
    lua_pushnil(L);
  return 3;
}

/* door.check_one(scheme, headers, body, now) -> true | false, code, msg */
static int l_door_check_one(lua_State *L) {
  hw_verify_scheme_t *s = check_scheme(L, 1);
  double now = luaL_checknumber(L, 4);
  hw_req_view_t r;
  lview_t lv;
  const char *code;
  char msg[200];
  view_of(L, 2, 3, &lv, &r);
  if (hw_verify_scheme_check(s, &r, now, &code, msg, sizeof msg) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, code);
  lua_pushstring(L, msg);
  return 3;
}

hw_verify_t *hw_lua_door_verify(lua_State *L, int idx) {
  hw_verify_t *v = NULL;
  if (lua_type(L, idx) != LUA_TTABLE)
    return NULL;
  if (lua_getfield(L, idx, "c") == LUA_TUSERDATA) {
    list_ud *u = luaL_testudata(L, -1, LIST_MT);
    v = u ? u->v : NULL;
  }
  lua_pop(L, 1);
  return v;
}

/* --- dedupe ------------------------------------------------------------ */

static hw_dedupe_t *overlay(lua_State *L) {
  hw_engine_t *e = ENG(L);
  if (e->dedupe == NULL && hw_dedupe_new(&e->dedupe) != 0)
    luaL_error(L, "not enough memory");
  return e->dedupe;
}

static hw_store_t *store(lua_State *L) {
  hw_store_t *st = ENG(L)->store;
  if (st == NULL)
    luaL_error(L, "store: not open");
  return st;
}

/* door.dedupe_spec(kind, name, verify_list | nil, window) -> spec | nil.
 * kind "header", "field" or "delivery" (nil: no scheme has one). */
static int l_door_dedupe_spec(lua_State *L) {
  static const char *const kinds[] = {"header", "field", "delivery", NULL};
  static const int kval[] = {HW_DK_HEADER, HW_DK_FIELD, HW_DK_DELIVERY};
  int kind = kval[luaL_checkoption(L, 1, NULL, kinds)];
  const char *name = luaL_optstring(L, 2, NULL);
  list_ud *lu = lua_isnoneornil(L, 3) ? NULL : luaL_checkudata(L, 3, LIST_MT);
  double window = luaL_optnumber(L, 4, HW_DEDUPE_WINDOW);
  dspec_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  int rc;
  u->sp = NULL;
  luaL_setmetatable(L, DSPEC_MT);
  rc = hw_dedupe_spec_new(kind, name, lu ? lu->v : NULL, window, &u->sp);
  if (rc == -ENOMEM)
    return luaL_error(L, "not enough memory");
  if (rc != 0)
    lua_pushnil(L);
  return 1;
}

static int l_dspec_gc(lua_State *L) {
  dspec_ud *u = luaL_checkudata(L, 1, DSPEC_MT);
  hw_dedupe_spec_free(u->sp);
  u->sp = NULL;
  return 0;
}

/* door.key(spec, headers, json | nil) -> key | nil | false (false: the key
 * is a body field and the body is not JSON: the caller reads its form). */
static int l_door_key(lua_State *L) {
  dspec_ud *u = luaL_checkudata(L, 1, DSPEC_MT);
  size_t jlen = 0, klen;
  const char *json = luaL_optlstring(L, 3, NULL, &jlen);
  char key[HW_DEDUPE_KEY_BUF];
  hw_req_view_t r;
  lview_t lv;
  int rc;
  view_of(L, 2, 4, &lv, &r);
  rc = hw_dedupe_key(u->sp, &r, json, jlen, key, &klen);
  if (rc == -ENOTSUP)
    lua_pushboolean(L, 0);
  else if (rc == 1)
    lua_pushlstring(L, key, klen);
  else
    lua_pushnil(L);
  return 1;
}

/* door.key_of(string) -> key | nil */
static int l_door_key_of(lua_State *L) {
  size_t n, klen;
  const char *v = luaL_checklstring(L, 1, &n);
  char key[HW_DEDUPE_KEY_BUF];
  if (hw_dedupe_key_of(v, n, key, &klen))
    lua_pushlstring(L, key, klen);
  else
    lua_pushnil(L);
  return 1;
}

/* door.find(cycle, step, key, now) -> nil | tx, seq | nil, answer | nil
 * (answer: {status, ctype, headers_json, body} not committed yet);
 * raises on a store error (as core.query's callers would fail). */
static int l_door_find(lua_State *L) {
  size_t klen;
  const char *cycle = luaL_checkstring(L, 1), *step = luaL_checkstring(L, 2);
  const char *key = luaL_checklstring(L, 3, &klen);
  double now = luaL_checknumber(L, 4);
  hw_dedupe_hit_t hit;
  int rc =
      hw_dedupe_find(overlay(L), store(L), cycle, step, key, klen, now, &hit);
  if (rc < 0)
    return luaL_error(L, "dedupe: %s", hw_store_errmsg(store(L)));
  if (rc == 0)
    return 0;
  lua_pushinteger(L, (lua_Integer)hit.tx);
  if (hit.seq)
    lua_pushinteger(L, (lua_Integer)hit.seq);
  else
    lua_pushnil(L);
  if (hit.status == 0)
    return 2;
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, hit.status);
  lua_setfield(L, -2, "status");
  if (hit.ctype) {
    lua_pushstring(L, hit.ctype);
    lua_setfield(L, -2, "ctype");
  }
  lua_pushstring(L, hit.headers ? hit.headers : "[]");
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, hit.body ? hit.body : "", hit.body_len);
  lua_setfield(L, -2, "body");
  return 3;
}

/* door.note(cycle, step, key, tx, window, now) -> seq */
static int l_door_note(lua_State *L) {
  size_t klen;
  const char *cycle = luaL_checkstring(L, 1), *step = luaL_checkstring(L, 2);
  const char *key = luaL_checklstring(L, 3, &klen);
  int64_t tx = (int64_t)luaL_checkinteger(L, 4);
  double window = luaL_checknumber(L, 5), now = luaL_checknumber(L, 6);
  uint64_t seq;
  if (hw_dedupe_note(overlay(L), store(L), cycle, step, key, klen, tx, window,
                     now, &seq) != 0)
    return luaL_error(L, "store: cannot queue write");
  lua_pushinteger(L, (lua_Integer)seq);
  return 1;
}

/* door.forget(cycle, step, key, tx) */
static int l_door_forget(lua_State *L) {
  size_t klen;
  const char *cycle = luaL_checkstring(L, 1), *step = luaL_checkstring(L, 2);
  const char *key = luaL_checklstring(L, 3, &klen);
  hw_dedupe_forget(overlay(L), cycle, step, key, klen,
                   (int64_t)luaL_checkinteger(L, 4));
  return 0;
}

/* door.record(cycle, step, key, tx, status, ctype, headers_json, body) */
static int l_door_record(lua_State *L) {
  size_t klen, blen;
  const char *cycle = luaL_checkstring(L, 1), *step = luaL_checkstring(L, 2);
  const char *key = luaL_checklstring(L, 3, &klen);
  int64_t tx = (int64_t)luaL_checkinteger(L, 4);
  int status = (int)luaL_checkinteger(L, 5);
  const char *ctype = luaL_optstring(L, 6, NULL);
  const char *headers = luaL_optstring(L, 7, "[]");
  const char *body = luaL_optlstring(L, 8, "", &blen);
  int rc = hw_dedupe_record(overlay(L), store(L), cycle, step, key, klen, tx,
                            status, ctype, headers, body, blen);
  if (rc == -ENOMEM)
    return luaL_error(L, "not enough memory");
  if (rc != 0)
    return luaL_error(L, "store: cannot queue write");
  return 0;
}

/* door.tick(now, sweep): sweep purges expired keys (one node does) */
static int l_door_tick(lua_State *L) {
  double now = luaL_checknumber(L, 1);
  if (ENG(L)->store != NULL)
    hw_dedupe_tick(overlay(L), ENG(L)->store, now, lua_toboolean(L, 2));
  return 0;
}

static int l_door_overlay_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)hw_dedupe_overlay_size(overlay(L)));
  return 1;
}

/* door.delivery(scheme) -> true when the scheme names a delivery id */
static int l_door_delivery(lua_State *L) {
  const char *h1, *h2, *f;
  lua_pushboolean(L, hw_verify_delivery(check_scheme(L, 1), &h1, &h2, &f));
  return 1;
}

const hw_dedupe_spec_t *hw_lua_door_dedupe(lua_State *L, int idx) {
  const hw_dedupe_spec_t *sp = NULL;
  if (lua_type(L, idx) != LUA_TTABLE)
    return NULL;
  if (lua_getfield(L, idx, "c") == LUA_TUSERDATA) {
    dspec_ud *u = luaL_testudata(L, -1, DSPEC_MT);
    sp = u ? u->sp : NULL;
  }
  lua_pop(L, 1);
  return sp;
}

int hw_lua_door_open(lua_State *L, hw_engine_t *e) {
  static const luaL_Reg fns[] = {{"scheme", l_door_scheme},
                                 {"list", l_door_list},
                                 {"check", l_door_check},
                                 {"check_one", l_door_check_one},
                                 {"delivery", l_door_delivery},
                                 {"dedupe_spec", l_door_dedupe_spec},
                                 {"key", l_door_key},
                                 {"key_of", l_door_key_of},
                                 {"find", l_door_find},
                                 {"note", l_door_note},
                                 {"forget", l_door_forget},
                                 {"record", l_door_record},
                                 {"tick", l_door_tick},
                                 {"overlay_size", l_door_overlay_size},
                                 {NULL, NULL}};
  static const struct {
    const char *name;
    lua_CFunction gc;
  } mts[] = {
      {SCHEME_MT, l_scheme_gc}, {LIST_MT, l_list_gc}, {DSPEC_MT, l_dspec_gc}};
  for (size_t i = 0; i < sizeof mts / sizeof mts[0]; i++) {
    luaL_newmetatable(L, mts[i].name);
    lua_pushcfunction(L, mts[i].gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "hookwork door object");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
  }
  luaL_newlibtable(L, fns);
  lua_pushlightuserdata(L, e);
  luaL_setfuncs(L, fns, 1);
  return 1;
}
