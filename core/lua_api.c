/* lua_api: the one lua_State.  Only the safe standard libraries are opened
 * (no io, no package, no debug, os cut down to getenv/time/date/clock/
 * difftime); `require` is ours and loads the engine's modules as text from
 * the lua/ directory.  The sandbox that cycle files run in is built on top
 * of this by lua/hookwork/sandbox.lua with the functions of sandbox.c.
 *
 * Owns: the allocator and its accounts.  Every block carries, in a header,
 * the account it is charged to (a run's, a file load's, or none), so a
 * run's memory is what it allocated and has not freed, whoever frees it.
 * The whole heap stays under HOOKWORK_LUA_MEMORY; inside a step, a run's
 * account stays under HOOKWORK_RUN_MEMORY and cycle code leaves the engine
 * a reserve of 1/16 of the heap limit to finish the runs that fail. */
#include "lua_api.h"
#include "hook.h"
#include "lua_door.h"
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
    hw_sandbox_fns(L, e);
    hw_hook_fns(L, e);
  } else if (strcmp(name, "hookwork.crypto") == 0) {
    hw_lua_crypto_open(L);
  } else if (strcmp(name, "hookwork.door") == 0) {
    hw_lua_door_open(L, e);
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

/* Calls the function below the nargs arguments on top, protected, with a
 * traceback.  The outermost call is one main-context scope: a fresh budget
 * and coroutine owner, cleared again when it returns. */
static int call_traced(hw_engine_t *e, const char *what, int nargs, int nres) {
  lua_State *L = e->L;
  int base = lua_gettop(L) - nargs - 1, st;

  lua_pushcfunction(L, traceback);
  lua_insert(L, base + 1);
  if (e->lua_calls++ == 0) {
    memset(&e->main_budget, 0, sizeof e->main_budget);
    e->main_serial = ++e->serial;
  }
  st = lua_pcall(L, nargs, nres, base + 1);
  if (--e->lua_calls == 0)
    memset(&e->main_budget, 0, sizeof e->main_budget);
  if (st != LUA_OK) {
    hw_log("lua", "%s: %s", what, lua_tostring(L, -1));
    lua_settop(L, base);
    return -1;
  }
  lua_remove(L, base + 1);
  return 0;
}

int hw_lua_call(hw_engine_t *e, const char *fn, int nargs, int nres) {
  lua_State *L = e->L;
  if (L == NULL || e->engine_ref <= 0)
    return -1; /* the engine never loaded; its error was logged */
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->engine_ref);
  lua_getfield(L, -1, fn); /* an existing key: no allocation */
  lua_remove(L, -2);
  lua_insert(L, -nargs - 1);
  return call_traced(e, fn, nargs, nres);
}

struct pushed {
  const char *fn;
  int (*push)(lua_State *, void *);
  void *arg;
  int nres;
};

static int call_pushed(lua_State *L) {
  struct pushed *p = lua_touserdata(L, 1);
  hw_engine_t *e = lua_touserdata(L, 2);
  int n;
  lua_settop(L, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->engine_ref);
  lua_getfield(L, -1, p->fn);
  lua_remove(L, -2);
  n = p->push(L, p->arg);
  lua_call(L, n, p->nres);
  return p->nres;
}

int hw_lua_callp(hw_engine_t *e, const char *fn, int (*push)(lua_State *, void *),
                 void *arg, int nres) {
  struct pushed p = {fn, push, arg, nres};
  if (e->L == NULL || e->engine_ref <= 0)
    return -1;
  lua_pushcfunction(e->L, call_pushed); /* light C function: no allocation */
  lua_pushlightuserdata(e->L, &p);
  lua_pushlightuserdata(e->L, e);
  return call_traced(e, fn, 2, nres);
}

/* --- memory -------------------------------------------------------- */

struct hw_memacct_s {
  size_t bytes;  /* charged and not yet freed */
  int released;  /* its owner is gone: given back with its last byte */
  hw_memacct_t *next_spare; /* in e->mem.spare */
};

/* 8 bytes keep Lua's alignment (LUAI_MAXALIGN: doubles, pointers). */
#define HDR sizeof(hw_memacct_t *)

/* Accounts no block points to any more are kept (up to HW_SPARE_MAX) for
 * the next run: starting a run allocates nothing once the engine has run a
 * while (docs/BENCHMARKS.md, "Runs"). */
#define HW_SPARE_MAX 1024

hw_memacct_t *hw_mem_acct_new(hw_engine_t *e) {
  hw_luamem_t *m = &e->mem;
  hw_memacct_t *a = m->spare;
  if (a == NULL)
    return calloc(1, sizeof(hw_memacct_t));
  m->spare = a->next_spare;
  m->nspare--;
  memset(a, 0, sizeof *a);
  return a;
}

/* No block is charged to `a` any more and nobody holds it. */
static void acct_done(hw_luamem_t *m, hw_memacct_t *a) {
  if (m->nspare >= HW_SPARE_MAX) {
    free(a);
    return;
  }
  a->next_spare = m->spare;
  m->spare = a;
  m->nspare++;
}

void hw_mem_acct_release(hw_engine_t *e, hw_memacct_t *a) {
  if (a == NULL)
    return;
  if (a->bytes == 0)
    acct_done(&e->mem, a);
  else
    a->released = 1;
}

size_t hw_mem_acct_bytes(const hw_memacct_t *a) { return a ? a->bytes : 0; }

static void acct_sub(hw_luamem_t *m, hw_memacct_t *a, size_t n) {
  if (a == NULL)
    return;
  a->bytes -= n;
  if (a->released && a->bytes == 0)
    acct_done(m, a);
}

/* A refusal inside a step costs that step's budget what the full garbage
 * collection Lua runs before asking again costs (about a heap's worth of
 * traversal), so a loop of pcall'd failing allocations ends like any other
 * runaway loop.  (The allocator must not raise: the hook raises later.) */
static int refused(hw_budget_t *b, size_t limit, size_t heap) {
  b->mem_hit = limit;
  b->used += (long) (heap / 8) + 1000;
  return 1;
}

/* Growth by `grow` bytes charged to `a`: refused past a limit.  Shrinking
 * never fails (Lua relies on that). */
static int refuse(hw_engine_t *e, hw_memacct_t *a, size_t grow) {
  hw_luamem_t *m = &e->mem;
  hw_budget_t *b = hw_sched_budget(e);
  size_t limit = m->limit;
  if (b->depth > 0)
    limit -= m->limit / 16; /* cycle code leaves the engine its reserve */
  if (m->total + grow > limit)
    return b->depth > 0 ? refused(b, m->limit, m->total) : 1;
  if (a != NULL && b->depth > 0 && a->bytes + grow > m->run_limit)
    return refused(b, m->run_limit, m->total);
  return 0;
}

/* When this refuses, Lua collects garbage at once and asks again; only a
 * second refusal is an error ("not enough memory", then named by the
 * step's protected call). */
static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  hw_engine_t *e = ud;
  hw_luamem_t *m = &e->mem;
  char *base = ptr != NULL ? (char *) ptr - HDR : NULL;
  hw_memacct_t *old = NULL, *a = m->acct;
  char *nb;

  if (base != NULL)
    memcpy(&old, base, HDR);
  else
    osize = 0; /* for a new block Lua passes the object's type here */
  if (nsize == 0) {
    if (base != NULL) {
      m->total -= osize + HDR;
      acct_sub(m, old, osize + HDR);
      free(base);
    }
    return NULL;
  }
  if (nsize > osize && refuse(e, a, nsize - osize + (base ? 0 : HDR))) {
    m->refused = ptr;
    m->refused_size = nsize;
    return NULL;
  }
  nb = realloc(base, nsize + HDR);
  if (nb == NULL)
    return NULL;
  m->allocs++;
  if (m->refused_size != 0 && nsize > osize) { /* (the collection shrinks) */
    /* Lua's retry after its collection got the room: no failure */
    if (ptr == m->refused && nsize == m->refused_size)
      hw_sched_budget(e)->mem_hit = 0;
    m->refused_size = 0;
  }
  m->total += nsize + HDR;
  if (a != NULL)
    a->bytes += nsize + HDR; /* before old's bytes go: a may be old */
  if (base != NULL) {
    m->total -= osize + HDR;
    acct_sub(m, old, osize + HDR);
  }
  memcpy(nb, &a, HDR);
  return nb + HDR;
}

/* Every call into Lua is protected (hw_lua_call, hw_lua_callp, lua_resume,
 * the pushes onto suspended runs in lua_core.c), so this is a bug: log it
 * where it can be found before Lua aborts. */
static int l_panic(lua_State *L) {
  hw_log("lua", "unprotected error: %s", lua_tostring(L, -1));
  return 0; /* lua aborts */
}

static size_t env_size(const char *name, size_t dflt) {
  const char *v = getenv(name);
  char *end;
  unsigned long long n;
  if (v == NULL || *v == '\0')
    return dflt;
  n = strtoull(v, &end, 10);
  if (*end != '\0' || n == 0) {
    hw_log("lua", "%s=%s is not a number of bytes; using %zu", name, v, dflt);
    return dflt;
  }
  return (size_t) n;
}

/* Everything that builds the state runs protected: out of memory here is
 * an error like any other. */
static int open_all(lua_State *L) {
  hw_engine_t *e = lua_touserdata(L, 1);
  open_safe_libs(L);
  hw_lua_strlib_open(L);
  hw_lua_tablib_open(L);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, l_require, 1);
  lua_setglobal(L, "require");
  lua_getglobal(L, "require");
  lua_pushstring(L, "hookwork.engine");
  lua_call(L, 1, 1);
  return 1;
}

/* The collector.  Generational by default: nearly everything a request
 * allocates (its tables, strings, the run's records) dies young, and a
 * minor collection only visits the young; measured in docs/BENCHMARKS.md
 * ("Latency at load"), about 15 % less loop CPU per fire-and-forget
 * request than Lua's incremental default.  HOOKWORK_LUA_GC=incremental
 * goes back to that; anything else is named and the engine does not start. */
static int set_gc_mode(lua_State *L) {
  const char *v = getenv("HOOKWORK_LUA_GC");
  if (v == NULL || *v == '\0' || strcmp(v, "generational") == 0) {
    lua_gc(L, LUA_GCGEN, 0, 0);
    return 0;
  }
  if (strcmp(v, "incremental") == 0) {
    lua_gc(L, LUA_GCINC, 0, 0, 0);
    return 0;
  }
  hw_log("lua", "HOOKWORK_LUA_GC=%s: expected generational (the default) or incremental", v);
  return -1;
}

int hw_lua_open(hw_engine_t *e) {
  lua_State *L;
  e->mem.limit = env_size("HOOKWORK_LUA_MEMORY", (size_t) 1 << 30);
  e->mem.run_limit = env_size("HOOKWORK_RUN_MEMORY", (size_t) 64 << 20);
  e->mem.acct = NULL;
  L = lua_newstate(l_alloc, e); /* the hook finds e here */
  if (L == NULL)
    return -1;
  lua_atpanic(L, l_panic);
  if (set_gc_mode(L) != 0) {
    lua_close(L);
    return -1;
  }
  hw_sched_hook(L);
  e->L = L;
  *(hw_run_t **) lua_getextraspace(L) = NULL;
  lua_pushcfunction(L, traceback);
  lua_pushcfunction(L, open_all);
  lua_pushlightuserdata(L, e);
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
  while (e->mem.spare != NULL) { /* lua_close freed every block */
    hw_memacct_t *a = e->mem.spare;
    e->mem.spare = a->next_spare;
    free(a);
  }
  e->mem.nspare = 0;
}
