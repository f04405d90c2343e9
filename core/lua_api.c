/* lua_api: the one lua_State.  Only the safe standard libraries are opened
 * (no io, no package, no debug, os cut down to getenv/time/date/clock/
 * difftime); `require` is ours and loads the engine's modules as text from
 * the lua/ directory.  The sandbox that cycle files run in is built on top
 * of this by L.sandbox in lua/hookwork/loader.lua. */
#include "lua_api.h"
#include "json.h"
#include "log.h"
#include "scheduler.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

static void open_safe_libs(lua_State *L) {
  static const char *const os_keep[] = {"getenv", "time", "date", "clock",
                                        "difftime", NULL};
  static const char *const base_drop[] = {"dofile", "loadfile", NULL};
  int i;

  luaL_requiref(L, "_G", luaopen_base, 1);
  luaL_requiref(L, "coroutine", luaopen_coroutine, 1);
  luaL_requiref(L, "string", luaopen_string, 1);
  luaL_requiref(L, "table", luaopen_table, 1);
  luaL_requiref(L, "math", luaopen_math, 1);
  luaL_requiref(L, "utf8", luaopen_utf8, 1);
  lua_pop(L, 6);
  luaopen_os(L); /* full os, then copy only the harmless functions */
  lua_newtable(L);
  for (i = 0; os_keep[i] != NULL; i++) {
    lua_getfield(L, -2, os_keep[i]);
    lua_setfield(L, -2, os_keep[i]);
  }
  lua_setglobal(L, "os");
  lua_pop(L, 1);
  for (i = 0; base_drop[i] != NULL; i++) {
    lua_pushnil(L);
    lua_setglobal(L, base_drop[i]);
  }
}

/* require(name): cached in the registry's _LOADED; "hookwork.json" is built
 * in (core/json.c), any other name is lua/<name with dots as slashes>.lua,
 * loaded as text only. */
static int l_require(lua_State *L) {
  hw_engine_t *e = lua_touserdata(L, lua_upvalueindex(1));
  const char *name = luaL_checkstring(L, 1);
  char path[4096];
  size_t i, n;

  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, name) != LUA_TNIL)
    return 1;
  lua_pop(L, 1);
  if (strcmp(name, "hookwork.json") == 0) {
    hw_json_open(L);
  } else if (strcmp(name, "hookwork.core") == 0) {
    hw_lua_core_open(L, e);
  } else {
    n = (size_t) snprintf(path, sizeof path, "%s/", e->cfg.lua_dir);
    for (i = 0; name[i] != '\0' && n + 5 < sizeof path; i++)
      path[n++] = name[i] == '.' ? '/' : name[i];
    snprintf(path + n, sizeof path - n, ".lua");
    if (strchr(name, '/') != NULL || luaL_loadfilex(L, path, "t") != LUA_OK)
      return luaL_error(L, "module '%s' not found: %s", name,
                        lua_isstring(L, -1) ? lua_tostring(L, -1) : path);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
  }
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

int hw_lua_call(hw_engine_t *e, const char *fn, int nargs, int nres) {
  lua_State *L = e->L;
  int base;

  if (L == NULL || e->engine_ref <= 0)
    return -1; /* the engine never loaded; its error was logged */
  base = lua_gettop(L) - nargs;

  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->engine_ref);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_rotate(L, base + 1, 2); /* handler, function, args... */
  e->main_budget = 0;
  e->main_killed = 0;
  if (lua_pcall(L, nargs, nres, base + 1) != LUA_OK) {
    hw_log("lua", "%s: %s", fn, lua_tostring(L, -1));
    lua_settop(L, base);
    return -1;
  }
  lua_remove(L, base + 1);
  return 0;
}

static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void) ud;
  (void) osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

static int l_panic(lua_State *L) {
  hw_log("lua", "unprotected error: %s", lua_tostring(L, -1));
  return 0; /* lua aborts */
}

int hw_lua_open(hw_engine_t *e) {
  lua_State *L = lua_newstate(l_alloc, e); /* the hook finds e here */
  if (L == NULL)
    return -1;
  lua_atpanic(L, l_panic);
  hw_sched_hook(L);
  e->L = L;
  *(hw_run_t **) lua_getextraspace(L) = NULL;
  open_safe_libs(L);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, l_require, 1);
  lua_setglobal(L, "require");
  lua_pushcfunction(L, traceback);
  lua_getglobal(L, "require");
  lua_pushstring(L, "hookwork.engine");
  if (lua_pcall(L, 1, 1, -3) != LUA_OK) {
    hw_log("lua", "cannot load the engine: %s", lua_tostring(L, -1));
    return -1;
  }
  e->engine_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  return 0;
}

void hw_lua_close(hw_engine_t *e) {
  if (e->L != NULL) {
    hw_sched_free_all(e);
    lua_close(e->L);
    e->L = NULL;
  }
}
