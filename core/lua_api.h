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

/* lua_core.c: pushes the `hookwork.core` table bound to e. */
int hw_lua_core_open(lua_State *L, hw_engine_t *e);

#endif
