/* sandbox: the C side of what cycle code may touch (the Lua side is
 * lua/hookwork/sandbox.lua).  Cycle code gets these instead of the raw
 * base functions:
 *   - coroutine.*, confined to the run that created the coroutine (as
 *     OpenResty does for a request): a coroutine made in one run cannot be
 *     resumed, closed or inspected from another, and a run's own thread
 *     never can;
 *   - setmetatable that refuses __gc (finalizers run with hooks off, so a
 *     looping one would freeze the engine), and getmetatable that hides
 *     the strings' metatable;
 *   - os.getenv that returns nothing for HOOKWORK_* names;
 *   - pcall and xpcall that re-raise a step's budget stop they caught.
 * core.protect (scheduler.c) and core.charge are added here too.
 *
 * Owns: the registry table of coroutine owners (thread -> owner serial,
 * weak keys).  Parts of the coroutine functions follow Lua 5.4's
 * lcorolib.c (MIT licence, Copyright (C) 1994-2022 Lua.org, PUC-Rio; see
 * third_party/README.md).
 */
#include "lua_api.h"
#include "scheduler.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define ENGINE(L) ((hw_engine_t *) lua_touserdata(L, lua_upvalueindex(1)))
#define OWNERS "hookwork.coroutine_owners"

static const char *const statname[] = {"running", "dead", "suspended", "normal"};
enum { COS_RUN, COS_DEAD, COS_YIELD, COS_NORM };

/* The thread at idx when the code running now created it; raises
 * otherwise.  `what` names the function for the message. */
static lua_State *owned(lua_State *L, int idx, const char *what) {
  hw_engine_t *e = ENGINE(L);
  lua_State *co = lua_tothread(L, idx);
  int mine;
  if (co == NULL)
    luaL_typeerror(L, idx, "coroutine");
  lua_getfield(L, LUA_REGISTRYINDEX, OWNERS);
  lua_pushvalue(L, idx);
  mine = lua_rawget(L, -2) == LUA_TNUMBER &&
         (unsigned long) lua_tointeger(L, -1) == hw_sched_serial(e);
  lua_pop(L, 2);
  if (!mine)
    luaL_error(L, "coroutine.%s: not a coroutine created in this run", what);
  return co;
}

/* Creates a thread for the function at 1, owned by the code running now;
 * leaves it on top.  It inherits the count hook of L. */
static lua_State *create(lua_State *L) {
  hw_engine_t *e = ENGINE(L);
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_getfield(L, LUA_REGISTRYINDEX, OWNERS);
  co = lua_newthread(L);
  lua_pushvalue(L, -1);
  lua_pushinteger(L, (lua_Integer) hw_sched_serial(e));
  lua_rawset(L, -4);
  lua_remove(L, -2);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  return co;
}

static int l_create(lua_State *L) {
  create(L);
  return 1;
}

static int auxresume(lua_State *L, lua_State *co, int narg) {
  int status, nres;
  if (!lua_checkstack(co, narg)) {
    lua_pushliteral(L, "too many arguments to resume");
    return -1;
  }
  lua_xmove(L, co, narg);
  status = lua_resume(co, L, narg, &nres);
  if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      return -1;
    }
    lua_xmove(co, L, nres);
    return nres;
  }
  lua_xmove(co, L, 1);
  return -1;
}

static int l_resume(lua_State *L) {
  lua_State *co = owned(L, 1, "resume");
  int r = auxresume(L, co, lua_gettop(L) - 1);
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int auxwrap(lua_State *L) {
  lua_State *co;
  int r;
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  co = owned(L, 1, "wrap");
  lua_remove(L, 1);
  r = auxresume(L, co, lua_gettop(L));
  if (r < 0) {
    int stat = lua_status(co);
    if (stat != LUA_OK && stat != LUA_YIELD) {
      stat = lua_resetthread(co);
      lua_xmove(co, L, 1);
    }
    if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  return r;
}

static int l_wrap(lua_State *L) {
  create(L);
  lua_pushvalue(L, lua_upvalueindex(1)); /* the engine */
  lua_insert(L, -2);
  lua_pushcclosure(L, auxwrap, 2);
  return 1;
}

/* A bare yield on a run's own thread would suspend the run with nothing to
 * wake it: only coroutines the step created may yield. */
static int l_yield(lua_State *L) {
  if (hw_sched_of(L) != NULL)
    return luaL_error(L, "coroutine.yield: a step can only yield inside a "
                         "coroutine it created");
  return lua_yield(L, lua_gettop(L));
}

static int auxstatus(lua_State *L, lua_State *co) {
  lua_Debug ar;
  if (L == co)
    return COS_RUN;
  switch (lua_status(co)) {
  case LUA_YIELD: return COS_YIELD;
  case LUA_OK:
    if (lua_getstack(co, 0, &ar))
      return COS_NORM;
    return lua_gettop(co) == 0 ? COS_DEAD : COS_YIELD;
  default: return COS_DEAD;
  }
}

static int l_status(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co != L)
    co = owned(L, 1, "status");
  lua_pushstring(L, statname[auxstatus(L, co)]);
  return 1;
}

static int l_isyieldable(lua_State *L) {
  lua_State *co = lua_isnone(L, 1) ? L : lua_tothread(L, 1);
  if (co != L)
    co = owned(L, 1, "isyieldable");
  lua_pushboolean(L, hw_sched_of(co) == NULL && lua_isyieldable(co));
  return 1;
}

/* The run's own thread, once seen, is never pooled for another run
 * (scheduler.c), so a reference kept from here reaches nothing later. */
static int l_running(lua_State *L) {
  hw_run_t *r = hw_sched_of(L);
  int ismain;
  if (r != NULL)
    r->exposed = 1;
  ismain = lua_pushthread(L);
  lua_pushboolean(L, ismain);
  return 2;
}

static int l_close(lua_State *L) {
  lua_State *co = owned(L, 1, "close");
  int status = auxstatus(L, co);
  if (status != COS_DEAD && status != COS_YIELD)
    return luaL_error(L, "cannot close a %s coroutine", statname[status]);
  if (lua_resetthread(co) == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

static const luaL_Reg co_fns[] = {
  {"create", l_create}, {"resume", l_resume}, {"wrap", l_wrap},
  {"yield", l_yield}, {"status", l_status}, {"isyieldable", l_isyieldable},
  {"running", l_running}, {"close", l_close}, {NULL, NULL}
};

/* --- pcall and xpcall ------------------------------------------------- */

/* Once a step is past its budget, a pcall that caught the stop raises it
 * again as soon as it returns: a loop of pcalls cannot swallow it. */
static int finish_pcall(lua_State *L, int status, lua_KContext extra) {
  hw_sched_charge(L, 0); /* raises when the step was stopped */
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int) extra;
}

static int l_pcall(lua_State *L) {
  int status;
  luaL_checkany(L, 1);
  lua_pushboolean(L, 1);
  lua_insert(L, 1);
  status = lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, finish_pcall);
  return finish_pcall(L, status, 0);
}

static int l_xpcall(lua_State *L) {
  int status, n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);
  lua_rotate(L, 3, 2);
  status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_pcall);
  return finish_pcall(L, status, 2);
}

/* --- metatables and the environment -------------------------------- */

static int l_setmetatable(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "__gc is not allowed in cycles");
    lua_pop(L, 1);
  }
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

/* Strings share one metatable whose __index is the engine's own string
 * library: cycle code must not reach it. */
static int l_getmetatable(lua_State *L) {
  luaL_checkany(L, 1);
  if (lua_type(L, 1) == LUA_TSTRING || !lua_getmetatable(L, 1)) {
    lua_pushnil(L);
    return 1;
  }
  luaL_getmetafield(L, 1, "__metatable");
  return 1;
}

static int l_getenv(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (strncmp(name, "HOOKWORK_", 9) == 0)
    lua_pushnil(L); /* the admin token and the engine's own settings */
  else
    lua_pushstring(L, getenv(name));
  return 1;
}

/* core.sandbox() -> { coroutine = {...}, setmetatable, getmetatable,
 * getenv, pcall, xpcall }: one shared set of C functions; sandbox.lua copies them into
 * each file's environment. */
static int l_sandbox(lua_State *L) {
  hw_engine_t *e = ENGINE(L);
  lua_createtable(L, 0, 4);
  luaL_newlibtable(L, co_fns);
  lua_pushlightuserdata(L, e);
  luaL_setfuncs(L, co_fns, 1);
  lua_setfield(L, -2, "coroutine");
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, l_setmetatable, 1);
  lua_setfield(L, -2, "setmetatable");
  lua_pushcfunction(L, l_getmetatable);
  lua_setfield(L, -2, "getmetatable");
  lua_pushcfunction(L, l_getenv);
  lua_setfield(L, -2, "getenv");
  lua_pushcfunction(L, l_pcall);
  lua_setfield(L, -2, "pcall");
  lua_pushcfunction(L, l_xpcall);
  lua_setfield(L, -2, "xpcall");
  return 1;
}

/* core.charge(n): n units of work against the current budget (load). */
static int l_charge(lua_State *L) {
  hw_sched_charge(L, (long) luaL_checkinteger(L, 1));
  return 0;
}

void hw_sandbox_fns(lua_State *L, hw_engine_t *e) {
  lua_newtable(L); /* thread -> owner serial, weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, OWNERS);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, l_sandbox, 1);
  lua_setfield(L, -2, "sandbox");
  lua_pushcfunction(L, hw_sched_protect);
  lua_setfield(L, -2, "protect");
  lua_pushcfunction(L, l_charge);
  lua_setfield(L, -2, "charge");
}
