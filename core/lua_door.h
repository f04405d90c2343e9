/* lua_door: `hookwork.door`, the Lua face of verify.c and dedupe.c
 * (verify.lua and dedupe.lua are thin bindings over it), and the way the C
 * accept path reaches what a webhook's Lua definition compiled.
 *
 * Owns: the userdata wrapping compiled schemes, scheme lists and dedupe
 * specs (each holds one reference, dropped by its __gc).
 * Uses: verify.h, dedupe.h, the engine's store and dedupe overlay. */
#ifndef HW_LUA_DOOR_H
#define HW_LUA_DOOR_H

#include <lua.h>

#include "dedupe.h"
#include "engine.h"
#include "verify.h"

/* Pushes the `hookwork.door` table bound to e. */
int hw_lua_door_open(lua_State *L, hw_engine_t *e);

/* The compiled verify list of a webhook: the value at idx is the step's
 * `verify` table (st.verify); returns its C list, or NULL when the webhook
 * has no verify or a scheme needs Lua (hmac with a payload function: call
 * verify.lua's check then).  Borrowed: hw_verify_retain to keep it past
 * the definition's life (a reload drops the old one). */
hw_verify_t *hw_lua_door_verify(lua_State *L, int idx);

/* The compiled dedupe spec of a webhook (st.dedupe at idx), or NULL when
 * none or its key is a Lua function.  Borrowed, valid while the webhook's
 * definition is loaded. */
const hw_dedupe_spec_t *hw_lua_door_dedupe(lua_State *L, int idx);

#endif
