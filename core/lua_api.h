/* lua_api: the Lua state, its sandbox and the `hookwork.core` module (the C
 * functions the engine's Lua code calls).
 *
 * Owns: the lua_State (closed by hw_lua_close).  Every call from C into Lua
 * outside the scheduler goes through hw_lua_call (a protected call with a
 * traceback); coroutines are resumed only by sched.c.
 */
#ifndef HW_LUA_API_H
#define HW_LUA_API_H

#include "engine.h"

/* Creates the state, loads the engine's Lua modules from cfg.lua_dir and
 * keeps the engine table in e->engine_ref.  0 or negative (logged). */
int hw_lua_open(hw_engine_t *e);
void hw_lua_close(hw_engine_t *e);

/* Calls engine[fn] with the nargs values on top of the stack, protected.
 * Leaves nres results on success (0); on error logs it, leaves nothing and
 * returns -1. */
int hw_lua_call(hw_engine_t *e, const char *fn, int nargs, int nres);

/* Memory accounts: an allocation made while an account is current
 * (e->mem.acct) is charged to it until freed.  hw_mem_acct_new returns NULL
 * when out of memory (allocations then go uncharged); release hands the
 * account to its allocations, and the last one freed gives it back (kept
 * for the next hw_mem_acct_new: no allocation in steady state). */
hw_memacct_t *hw_mem_acct_new(hw_engine_t *e);
void hw_mem_acct_release(hw_engine_t *e, hw_memacct_t *a);
size_t hw_mem_acct_bytes(const hw_memacct_t *a);

/* Like hw_lua_call, but push(L, arg) pushes the arguments inside the
 * protected call (it returns how many), so running out of memory while
 * building them is an error, not a panic. */
int hw_lua_callp(hw_engine_t *e, const char *fn, int (*push)(lua_State *, void *),
                 void *arg, int nres);

/* sandbox.c: adds the sandbox's functions to the core table on top. */
void hw_sandbox_fns(lua_State *L, hw_engine_t *e);

/* lua_strlib.c, lua_tablib.c: replace string.find/match/gmatch/gsub/rep
 * and the table library with versions that charge the step budget. */
void hw_lua_strlib_open(lua_State *L);
void hw_lua_tablib_open(lua_State *L);

/* lua_core.c: pushes the `hookwork.core` table bound to e. */
int hw_lua_core_open(lua_State *L, hw_engine_t *e);

/* lua_crypto.c: pushes the `hookwork.crypto` table (pure functions). */
int hw_lua_crypto_open(lua_State *L);

#endif
