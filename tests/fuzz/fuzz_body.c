/* fuzz_body: body decoding and field extraction, the way a webhook reads a
 * request (lua/hookwork/fields.lua through the engine's own Lua state:
 * JSON, form and multipart bodies, then a `fields` spec with every type,
 * dotted and optional names, and no spec).
 *
 * Input: the first byte picks the Content-Type, the rest is the body.  A
 * Lua error (rather than a nil, message answer) would be a 500 for the
 * caller: it aborts.  Needs HOOKWORK_LUA_DIR or ./lua (make fuzz runs from
 * the repository root). */
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

static hw_engine_t E;
static uv_loop_t loop;
static int ready;

/* The webhook path of engine.lua: parse_body, then to_data with and without
 * a spec; each answers a value or (nil, message[, status]). */
static const char setup[] =
  "local F = require 'hookwork.fields'\n"
  "local spec = assert(F.compile({ id = 'string', n = 'number?',\n"
  "  i = 'integer?', b = 'boolean?', o = 'object?', a = 'array?',\n"
  "  ['c.email'] = 'string?', x = 'any?' }))\n"
  "local function check(data, err, status)\n"
  "  if data == nil then\n"
  "    assert(type(err) == 'string', 'no message')\n"
  "    assert(status == nil or (status >= 400 and status < 500))\n"
  "  else assert(type(data) == 'table') end\n"
  "  return data\n"
  "end\n"
  "return function(ct, body)\n"
  "  local headers = { ['content-type'] = ct }\n"
  "  local obj, is_form, kind = F.parse_body({ headers = headers, body = body })\n"
  "  if obj == nil then assert(type(is_form) == 'string'); return end\n"
  "  local mt = F.media_type(headers)\n"
  "  local data = check(F.to_data(spec, obj, is_form, kind, mt))\n"
  "  if data then assert(type(data.id) == 'string') end\n"
  "  check(F.to_data(nil, obj, is_form, kind, mt))\n"
  "end\n";

static void init(void) {
  hw_config_t c;
  const char *dir = getenv("HOOKWORK_LUA_DIR");

  memset(&c, 0, sizeof c);
  c.mode = HW_MODE_CHECK;
  c.cycles_dir = ".";
  c.lua_dir = dir ? dir : "lua";
  c.step_budget = 50000000;
  c.max_body = 1 << 20;
  uv_loop_init(&loop);
  if (hw_engine_init(&E, &loop, &c) != 0 ||
      luaL_loadstring(E.L, setup) != LUA_OK ||
      lua_pcall(E.L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_body: cannot set up: %s\n",
            E.L ? lua_tostring(E.L, -1) : "no Lua state");
    abort();
  }
  lua_setfield(E.L, LUA_REGISTRYINDEX, "fuzz_body");
  ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const types[] = {
    "application/json", "application/x-www-form-urlencoded",
    "text/plain", "", "application/json; charset=utf-8",
    "APPLICATION/X-WWW-FORM-URLENCODED; charset=latin1",
    "multipart/form-data; boundary=XyZ", "application/vnd.api+json"};
  lua_State *L;

  if (!ready)
    init();
  if (size == 0)
    return 0;
  L = E.L;
  /* one webhook's worth of budget per input, as hw_lua_call gives */
  memset(&E.main_budget, 0, sizeof E.main_budget);
  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz_body");
  lua_pushstring(L, types[data[0] % (sizeof types / sizeof types[0])]);
  lua_pushlstring(L, (const char *) data + 1, size - 1);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "fuzz_body: Lua error: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  return 0;
}
