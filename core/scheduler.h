/* scheduler: runs (Lua coroutines), the ready queue, and the one lua_resume.
 *
 * A run is created by hw_sched_spawn and owned by the scheduler: it holds a
 * registry reference to its coroutine, released in exactly one place
 * (run_free) when the coroutine ends, fails, or the engine is torn down.
 * libuv and curl callbacks never resume Lua: they push results onto the
 * suspended coroutine and call hw_sched_ready; the uv_check handle then
 * resumes ready runs in order (hw_sched_drain).
 */
#ifndef HW_SCHEDULER_H
#define HW_SCHEDULER_H

#include "engine.h"

enum { HW_RUN_READY = 1, HW_RUN_RUNNING, HW_RUN_WAITING };

struct hw_run_s {
  hw_engine_t *eng;
  lua_State *co;
  int ref;               /* registry ref anchoring co */
  int state;
  int nargs;             /* values pushed for the next resume */
  hw_budget_t budget;    /* the current step's limits */
  hw_memacct_t *acct;    /* the run's allocations (lua_api.c) */
  unsigned long serial;  /* unique per run: owner of its coroutines */
  int exposed;           /* cycle code saw the thread: never pooled */
  int requeue;           /* yielded by core.later: ready again at once */
  void *wait;            /* what the run waits on */
  hw_run_t *next_ready;
  hw_run_t *prev, *next; /* all live runs */
};

/* Creates a run for the function on top of L with nargs arguments below it
 * (pops them) and queues it.  Returns the run or NULL (nothing popped). */
hw_run_t *hw_sched_spawn(hw_engine_t *e, lua_State *L, int nargs);
/* The run of a coroutine, or NULL for any other thread. */
hw_run_t *hw_sched_of(lua_State *L);
/* Queues a waiting run; its results (nargs values) are already pushed. */
void hw_sched_ready(hw_run_t *r, int nargs);
/* Resumes ready runs until none is ready (check handle). */
void hw_sched_drain(hw_engine_t *e);
/* Frees every run without resuming it (engine teardown). */
void hw_sched_free_all(hw_engine_t *e);
/* Installs the instruction-count hook on a thread. */
void hw_sched_hook(lua_State *co);
/* The budget of the code running now: the current run's, or the main
 * context's. */
hw_budget_t *hw_sched_budget(hw_engine_t *e);
/* The owner serial of code running now (a run's, or the main context's). */
unsigned long hw_sched_serial(hw_engine_t *e);
/* Counts n units of work done by a C function (the pattern matcher, table
 * shifts) against the current budget; raises the budget error past it. */
void hw_sched_charge(lua_State *L, long n);
/* core.protect(f, ...): runs f as one step (see hw_budget_s).  Returns
 * true, results... or false, message (always a string).  Yieldable. */
int hw_sched_protect(lua_State *L);

#endif
