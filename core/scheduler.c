/* scheduler: the run scheduler.  hw_sched_drain is the only caller of
 * lua_resume in the engine; every wake-up goes through hw_sched_ready. */
#include "scheduler.h"
#include "log.h"

#include <assert.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#define HW_HOOK_EVERY 1000
#define HW_POOL_MAX 256 /* finished coroutines kept for reuse */

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
  if (r->cancel != NULL)
    r->cancel(r);
  run_unlink(r);
  *(hw_run_t **) lua_getextraspace(r->co) = NULL;
  luaL_unref(e->L, LUA_REGISTRYINDEX, r->ref);
  free(r);
}

/* Count hook: a step that runs past its budget is stopped with an error.
 * Once killed, every later hook call raises again so a pcall inside the
 * step cannot swallow the stop; the engine clears it between steps.  The
 * engine is the allocator's userdata, so the hook finds it from any thread,
 * including coroutines that cycle code creates inside a step. */
static void count_hook(lua_State *L, lua_Debug *ar) {
  void *ud;
  hw_engine_t *e;
  long *budget;
  int *killed;
  (void) ar;
  lua_getallocf(L, &ud);
  e = ud;
  budget = e->current ? &e->current->budget : &e->main_budget;
  killed = e->current ? &e->current->killed : &e->main_killed;
  *budget += HW_HOOK_EVERY;
  if (*killed || *budget > e->cfg.step_budget) {
    *killed = 1;
    luaL_error(L, "step stopped: it ran past its budget of %I instructions",
               (lua_Integer) e->cfg.step_budget);
  }
}

void hw_sched_hook(lua_State *co) {
  lua_sethook(co, count_hook, LUA_MASKCOUNT, HW_HOOK_EVERY);
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
  r->budget = 0;
  r->killed = 0;
  r->cancel = NULL;
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
  r->cancel = NULL;
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

static void resume(hw_run_t *r) {
  lua_State *co = r->co;
  int st, nres = 0;

  r->state = HW_RUN_RUNNING;
  r->eng->current = r;
  st = lua_resume(co, r->eng->L, r->nargs, &nres);
  r->eng->current = NULL;
  if (st == LUA_YIELD) {
    lua_pop(co, nres);
    r->state = HW_RUN_WAITING; /* whoever it waits on holds it now */
    return;
  }
  if (st == LUA_OK && r->eng->npool < HW_POOL_MAX && !r->eng->stopping) {
    lua_settop(co, 0);
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
