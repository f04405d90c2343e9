/* scheduler: the run scheduler.  hw_sched_drain is the only caller of
 * lua_resume on a run; every wake-up goes through hw_sched_ready.  Also the
 * step budget: the count hook, hw_sched_charge for long C functions, and
 * core.protect, the one place a step's limits are set and cleared. */
#include "scheduler.h"
#include "log.h"
#include "lua_api.h"

#include <assert.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define HW_HOOK_EVERY 1000
#define HW_POOL_MAX 256 /* finished coroutines kept for reuse */
#define HW_ERROR_MAX 4096 /* a step's error message is cut past this */

static void run_link(hw_engine_t *e, hw_run_t *r) {
  r->prev = NULL;
  r->next = e->runs;
  if (e->runs != NULL)
    e->runs->prev = r;
  e->runs = r;
  e->nruns++;
}

static void run_unlink(hw_run_t *r) {
  hw_engine_t *e = r->eng;
  if (r->prev != NULL)
    r->prev->next = r->next;
  else
    e->runs = r->next;
  if (r->next != NULL)
    r->next->prev = r->prev;
  e->nruns--;
}

/* The one place a run's registry reference is released. */
static void run_free(hw_run_t *r) {
  hw_engine_t *e = r->eng;
  run_unlink(r);
  hw_mem_acct_release(e, r->acct);
  *(hw_run_t **) lua_getextraspace(r->co) = NULL;
  luaL_unref(e->L, LUA_REGISTRYINDEX, r->ref);
  free(r);
}

hw_budget_t *hw_sched_budget(hw_engine_t *e) {
  return e->current != NULL ? &e->current->budget : &e->main_budget;
}

unsigned long hw_sched_serial(hw_engine_t *e) {
  return e->current != NULL ? e->current->serial : e->main_serial;
}

static hw_engine_t *engine_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud); /* the engine is the allocator's userdata */
  return ud;
}

static void over_budget(lua_State *L, hw_engine_t *e, long n) {
  hw_budget_t *b = hw_sched_budget(e);
  b->used += n;
  if (b->killed || b->used > e->cfg.step_budget) {
    /* Sticky only inside a step (cleared when its call returns); outside
     * one the engine's own code gets one error and a fresh count. */
    if (b->depth > 0)
      b->killed = 1;
    else
      b->used = 0;
    luaL_error(L, "step stopped: it ran past its budget of %I instructions",
               (lua_Integer) e->cfg.step_budget);
  }
}

/* Count hook: a step that runs past its budget is stopped with an error.
 * Once killed, every later hook call raises again so a pcall inside the
 * step cannot swallow the stop; hw_sched_protect clears it when the step's
 * protected call returns.  The hook finds the engine from any thread,
 * including coroutines that cycle code creates inside a step. */
static void count_hook(lua_State *L, lua_Debug *ar) {
  hw_engine_t *e = engine_of(L);
  (void) ar;
  over_budget(L, e, HW_HOOK_EVERY);
  /* the store's batch machine gets a turn while a step holds the loop */
  if (e->store != NULL)
    hw_store_turn(e->store);
}

void hw_sched_hook(lua_State *co) {
  lua_sethook(co, count_hook, LUA_MASKCOUNT, HW_HOOK_EVERY);
}

void hw_sched_charge(lua_State *L, long n) { over_budget(L, engine_of(L), n); }

/* --- core.protect: one step's scope ------------------------------------ */

static void scope_enter(hw_engine_t *e, hw_budget_t *b) {
  if (b->depth++ > 0)
    return;
  b->used = 0;
  b->killed = 0;
  b->mem_hit = 0;
  if (e->current == NULL) { /* a file's top level: an account of its own */
    b->scope = hw_mem_acct_new(e);
    e->mem.acct = b->scope;
  }
}

static void scope_leave(hw_engine_t *e, hw_budget_t *b) {
  if (--b->depth > 0)
    return;
  b->used = 0;
  b->killed = 0;
  b->mem_hit = 0;
  if (b->scope != NULL) {
    if (e->mem.acct == b->scope)
      e->mem.acct = NULL;
    hw_mem_acct_release(e, b->scope);
    b->scope = NULL;
  }
}

/* The message of a non-string error object, still under the step's budget
 * (a __tostring that loops is stopped like any other step code). */
static int error_text(lua_State *L) {
  if (lua_type(L, 1) == LUA_TTABLE && lua_getfield(L, 1, "message") == LUA_TSTRING)
    return 1;
  luaL_tolstring(L, 1, NULL);
  return 1;
}

/* The stack is `true` (pushed before the call) and the results, or `true`
 * and the error.  The scope is left before anything that could fail. */
static int protect_done(lua_State *L, int status, lua_KContext ctx) {
  hw_engine_t *e = engine_of(L);
  hw_budget_t *b = hw_sched_budget(e);
  size_t mem_hit;
  int killed;
  (void) ctx;
  if (status == LUA_OK || status == LUA_YIELD) {
    scope_leave(e, b);
    return lua_gettop(L);
  }
  if (lua_type(L, 2) != LUA_TSTRING && !b->killed && !b->mem_hit) {
    lua_pushcfunction(L, error_text);
    lua_insert(L, 2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || lua_type(L, 2) != LUA_TSTRING) {
      lua_settop(L, 1);
      lua_pushliteral(L, "(error object is not a string)");
    }
  }
  mem_hit = b->mem_hit;
  killed = b->killed;
  scope_leave(e, b);
  lua_settop(L, 2);
  lua_pushboolean(L, 0);
  lua_replace(L, 1);
  if (mem_hit) {
    lua_pushfstring(L, "step stopped: memory limit of %I bytes", (lua_Integer) mem_hit);
    lua_replace(L, 2);
  } else if (killed) {
    lua_pushfstring(L, "step stopped: it ran past its budget of %I instructions",
                    (lua_Integer) e->cfg.step_budget);
    lua_replace(L, 2);
  } else if (lua_rawlen(L, 2) > HW_ERROR_MAX) {
    /* the message goes to the history, the store and maybe an answer */
    size_t n = lua_rawlen(L, 2);
    lua_pushlstring(L, lua_tostring(L, 2), HW_ERROR_MAX);
    lua_pushfstring(L, " ... (%I bytes)", (lua_Integer) n);
    lua_concat(L, 2);
    lua_replace(L, 2);
  }
  return 2;
}

int hw_sched_protect(lua_State *L) {
  hw_engine_t *e = engine_of(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_pushboolean(L, 1); /* the first result, in place before the call */
  lua_insert(L, 1);
  scope_enter(e, hw_sched_budget(e));
  return protect_done(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0, 0, protect_done), 0);
}

hw_run_t *hw_sched_of(lua_State *L) {
  return *(hw_run_t **) lua_getextraspace(L);
}

/* A run whose coroutine ended normally keeps its thread (and registry
 * reference) in the pool: starting the next run on it costs no new thread.
 * A coroutine that ended with an error is never reused. */
static hw_run_t *pool_take(hw_engine_t *e, lua_State *L, int nargs) {
  hw_run_t *r = e->pool;
  if (r == NULL)
    return NULL;
  e->pool = r->next;
  e->npool--;
  memset(&r->budget, 0, sizeof r->budget);
  r->acct = hw_mem_acct_new(e);
  r->serial = ++e->serial;
  r->exposed = 0;
  r->requeue = 0;
  r->wait = NULL;
  lua_xmove(L, r->co, nargs + 1);
  run_link(e, r);
  r->state = HW_RUN_WAITING;
  hw_sched_ready(r, nargs);
  return r;
}

hw_run_t *hw_sched_spawn(hw_engine_t *e, lua_State *L, int nargs) {
  hw_run_t *r = pool_take(e, L, nargs);
  lua_State *co;

  if (r != NULL)
    return r;
  r = calloc(1, sizeof *r);
  if (r == NULL)
    return NULL;
  co = lua_newthread(L);
  r->ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the thread */
  r->eng = e;
  r->co = co;
  r->acct = hw_mem_acct_new(e);
  r->serial = ++e->serial;
  *(hw_run_t **) lua_getextraspace(co) = r;
  lua_xmove(L, co, nargs + 1); /* function and arguments */
  hw_sched_hook(co);
  run_link(e, r);
  r->state = HW_RUN_WAITING;
  hw_sched_ready(r, nargs);
  return r;
}

/* While runs are ready the loop must not block in poll: an active idle
 * handle makes poll return at once, and the check handle then drains. */
static void idle_noop(uv_idle_t *h) { (void) h; }

void hw_sched_ready(hw_run_t *r, int nargs) {
  hw_engine_t *e = r->eng;
  assert(r->state == HW_RUN_WAITING);
  r->state = HW_RUN_READY;
  r->nargs = nargs;
  r->wait = NULL;
  r->next_ready = NULL;
  if (e->ready_tail != NULL)
    e->ready_tail->next_ready = r;
  else
    e->ready_head = r;
  e->ready_tail = r;
  if (!uv_is_closing((uv_handle_t *) &e->idle))
    uv_idle_start(&e->idle, idle_noop);
}

/* While a run is resumed, the hook counts against its budget and the
 * allocator charges its account. */
static void resume(hw_run_t *r) {
  hw_engine_t *e = r->eng;
  lua_State *co = r->co;
  hw_run_t *was = e->current;
  hw_memacct_t *was_acct = e->mem.acct;
  int st, nres = 0;

  r->state = HW_RUN_RUNNING;
  e->current = r;
  e->mem.acct = r->acct;
  st = lua_resume(co, e->L, r->nargs, &nres);
  e->current = was;
  e->mem.acct = was_acct;
  if (st == LUA_YIELD) {
    lua_pop(co, nres);
    r->state = HW_RUN_WAITING; /* whoever it waits on holds it now */
    if (r->requeue) { /* core.later: behind the runs ready now */
      r->requeue = 0;
      hw_sched_ready(r, 0);
    }
    return;
  }
  /* A thread cycle code has seen (coroutine.running) is never reused, so
   * no later run can be reached through a reference kept from this one. */
  if (st == LUA_OK && e->npool < HW_POOL_MAX && !e->stopping && !r->exposed) {
    lua_settop(co, 0);
    hw_mem_acct_release(e, r->acct);
    r->acct = NULL;
    run_unlink(r);
    r->state = 0;
    r->next = r->eng->pool;
    r->eng->pool = r;
    r->eng->npool++;
    return;
  }
  if (st != LUA_OK) {
    /* The engine's Lua wraps every step in pcall, so an error reaching here
     * is an engine bug: log it, never crash. */
    const char *msg = lua_tostring(co, -1);
    hw_log("sched", "run failed outside a step: %s", msg ? msg : "?");
  }
  run_free(r);
}

void hw_sched_drain(hw_engine_t *e) {
  int budget = 10000; /* then yield to I/O; the idle handle brings us back */
  while (e->ready_head != NULL && budget-- > 0) {
    hw_run_t *r = e->ready_head;
    e->ready_head = r->next_ready;
    if (e->ready_head == NULL)
      e->ready_tail = NULL;
    resume(r);
  }
  if (e->ready_head == NULL)
    uv_idle_stop(&e->idle);
}

void hw_sched_free_all(hw_engine_t *e) {
  while (e->runs != NULL)
    run_free(e->runs);
  while (e->pool != NULL) {
    hw_run_t *r = e->pool;
    e->pool = r->next;
    run_link(e, r); /* so run_free can unlink it */
    run_free(r);
  }
  e->npool = 0;
  e->ready_head = e->ready_tail = NULL;
}
