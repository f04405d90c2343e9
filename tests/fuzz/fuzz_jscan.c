/* fuzz_jscan: core/jscan.c against core/json.c, the decoder it mirrors.
 *
 * Input: any bytes, as a webhook body.  Invariants besides "no crash":
 *   - hw_jscan_check passes exactly the texts hw_json_decode (strict)
 *     decodes: a body the C accept path stores always reads back;
 *   - for a checked object, every member hw_jscan_next yields whose key has
 *     no escape: hw_jscan_member finds a slice that decodes to the value
 *     the decoder kept for that key (the last one), and the walk yields as
 *     many members as the text has (the decoded table has no more keys);
 *   - for a number slice, hw_jscan_integer says "integer" only when the
 *     decoded value is one for math.tointeger, with the same value (and,
 *     for a slice under 64 bytes, always when it is). */
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "json.h"

static lua_State *L;

#define CHECK(c)                                                            \
  do {                                                                      \
    if (!(c)) {                                                             \
      fprintf(stderr, "fuzz_jscan: %s:%d: %s\n", __FILE__, __LINE__, #c);   \
      abort();                                                              \
    }                                                                       \
  } while (0)

/* Equality of two decoded scalars or, for tables, of their key counts
 * (deep equality is fuzz_json's job; here the slices are what matters). */
static int same(int a, int b) {
  int t = lua_type(L, a);
  if (t != lua_type(L, b))
    return 0;
  if (t == LUA_TNUMBER) {
    if (lua_isinteger(L, a) != lua_isinteger(L, b))
      return 0;
    return lua_isinteger(L, a) ? lua_tointeger(L, a) == lua_tointeger(L, b)
                               : lua_tonumber(L, a) == lua_tonumber(L, b);
  }
  if (t == LUA_TSTRING) {
    size_t la, lb;
    const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
    return la == lb && memcmp(sa, sb, la) == 0;
  }
  if (t == LUA_TTABLE)
    return lua_rawlen(L, a) == lua_rawlen(L, b) &&
           hw_json_is_marked(L, a) == hw_json_is_marked(L, b);
  return lua_rawequal(L, a, b);
}

static void check_integer(hw_jslice_t v, int val) {
  int64_t i;
  int literal, is = hw_jscan_integer(v, &i, &literal);
  int lua_is = 0;
  int64_t lua_i = 0;
  if (lua_isinteger(L, val)) {
    lua_is = 1;
    lua_i = lua_tointeger(L, val);
  } else {
    double d = lua_tonumber(L, val);
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && floor(d) == d) {
      lua_is = 1;
      lua_i = (int64_t) d;
    }
  }
  if (is)
    CHECK(lua_is && lua_i == i);
  else if (v.n < 64)
    CHECK(!lua_is);
  if (is && literal)
    CHECK(lua_isinteger(L, val));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  const char *s = (const char *) data;
  hw_jslice_t root, k, v, m;
  const char *pos;
  int rc, members = 0, top;

  if (L == NULL) {
    L = luaL_newstate();
    CHECK(L != NULL);
  }
  lua_settop(L, 0);
  rc = hw_json_decode(L, s, size, 0, err, sizeof err);
  CHECK((hw_jscan_check(s, size, &root) == 0) == (rc == 0));
  if (rc != 0)
    return 0;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    check_integer(root, 1);
    return 0;
  }
  if (root.p[0] != '{')
    return 0;
  pos = root.p;
  while (hw_jscan_next(&pos, root.p + root.n, &k, &v)) {
    members++;
    top = lua_gettop(L);
    CHECK(hw_json_decode(L, v.p, v.n, 0, err, sizeof err) == 0); /* the slice alone */
    if (memchr(k.p, '\\', k.n) == NULL) {
      rc = hw_jscan_member(root, k.p, k.n, &m);
      CHECK(rc == 1 || rc == -1);
      if (rc == 1) {
        CHECK(hw_json_decode(L, m.p, m.n, 0, err, sizeof err) == 0);
        lua_pushlstring(L, k.p, k.n);
        lua_rawget(L, 1);
        CHECK(same(top + 2, top + 3));
        if (lua_type(L, top + 2) == LUA_TNUMBER)
          check_integer(m, top + 2);
      }
    }
    lua_settop(L, top);
  }
  /* every key of the table came from some member */
  {
    int keys = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
      keys++;
      lua_pop(L, 1);
    }
    CHECK(keys <= members);
  }
  lua_settop(L, 0);
  if (size > 4096)
    lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
