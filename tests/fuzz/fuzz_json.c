/* fuzz_json: the JSON -> Lua -> JSON round trip of core/json.c.
 *
 * Input: any bytes, decoded as JSON text (strict, then lax when strict
 * refuses).  Invariants besides "no crash":
 *   - decode either pushes one value or leaves the stack as it was, with a
 *     message;
 *   - a decoded value always encodes (nothing decoded is unstorable), to
 *     valid UTF-8 that decodes strictly again to a value equal to the first
 *     one: same types (integer vs float included), same strings byte for
 *     byte, arrays still marked, objects with the same keys;
 *   - encoding that second value gives the same number of bytes (key order
 *     may differ, nothing else). */
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static lua_State *L;

#define CHECK(c)                                                            \
  do {                                                                      \
    if (!(c)) {                                                             \
      fprintf(stderr, "fuzz_json: %s:%d: %s\n", __FILE__, __LINE__, #c);    \
      abort();                                                              \
    }                                                                       \
  } while (0)

static int valid_utf8(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = s[i];
    size_t k, len;
    unsigned cp;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c < 0xE0) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c < 0xF0) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c < 0xF5) { len = 4; cp = c & 0x07; }
    else return 0;
    if (i + len > n)
      return 0;
    for (k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += len;
  }
  return 1;
}

/* Deep equality of the values at a and b (absolute indices). */
static int same(int a, int b, int depth) {
  int t = lua_type(L, a), n = 0, m = 0, eq = 1;
  CHECK(depth <= HW_JSON_MAX_DEPTH + 1);
  if (t != lua_type(L, b))
    return 0;
  switch (t) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, a) != lua_isinteger(L, b))
      return 0;
    if (lua_isinteger(L, a))
      return lua_tointeger(L, a) == lua_tointeger(L, b);
    /* -0.0 and 0.0 compare equal; the sign is checked through 1/x */
    return lua_tonumber(L, a) == lua_tonumber(L, b) &&
           (lua_tonumber(L, a) != 0 ||
            (1 / lua_tonumber(L, a) > 0) == (1 / lua_tonumber(L, b) > 0));
  case LUA_TSTRING: {
    size_t la, lb;
    const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
    return la == lb && memcmp(sa, sb, la) == 0;
  }
  case LUA_TTABLE:
    if (hw_json_is_marked(L, a) != hw_json_is_marked(L, b))
      return 0;
    CHECK(lua_checkstack(L, 4));
    lua_pushnil(L);
    while (eq && lua_next(L, a) != 0) {
      n++;
      lua_pushvalue(L, -2);
      lua_rawget(L, b);
      eq = same(lua_gettop(L) - 1, lua_gettop(L), depth + 1);
      lua_pop(L, 2);
    }
    if (!eq) {
      lua_pop(L, 1); /* the key lua_next left */
      return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, b) != 0) {
      m++;
      lua_pop(L, 1);
    }
    return n == m;
  default: /* booleans, the null sentinel */
    return lua_rawequal(L, a, b);
  }
}

/* Encodes the value on top, checks the text and decodes it again (strict);
 * leaves text and value on the stack. */
static void encode_and_back(void) {
  char err[512];
  size_t n;
  const char *out;
  int top = lua_gettop(L);
  if (hw_json_encode(L, top, "value", err, sizeof err) != 0) {
    fprintf(stderr, "fuzz_json: a decoded value did not encode: %s\n", err);
    abort();
  }
  CHECK(lua_gettop(L) == top + 1);
  out = lua_tolstring(L, -1, &n);
  CHECK(valid_utf8((const unsigned char *) out, n));
  if (hw_json_decode(L, out, n, 0, err, sizeof err) != 0) {
    fprintf(stderr, "fuzz_json: own output refused: %s\n%.*s\n", err,
            (int) (n > 300 ? 300 : n), out);
    abort();
  }
  CHECK(lua_gettop(L) == top + 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[256];
  const char *s = (const char *) data;
  size_t n1, n2;
  int rc;

  if (L == NULL) {
    L = luaL_newstate();
    CHECK(L != NULL);
  }
  lua_settop(L, 0);
  err[0] = '\0';
  rc = hw_json_decode(L, s, size, 0, err, sizeof err);
  if (rc != 0) {
    CHECK(lua_gettop(L) == 0 && err[0] != '\0');
    rc = hw_json_decode(L, s, size, HW_JSON_LAX, err, sizeof err);
    if (rc != 0) {
      CHECK(lua_gettop(L) == 0);
      return 0;
    }
  }
  CHECK(lua_gettop(L) == 1);
  encode_and_back();                /* 1 value, 2 text, 3 value again */
  CHECK(same(1, 3, 0));
  n1 = lua_rawlen(L, 2);
  lua_pushvalue(L, 3);
  encode_and_back();                /* 4 value, 5 text, 6 value */
  n2 = lua_rawlen(L, 5);
  CHECK(n1 == n2);
  CHECK(same(1, 6, 0));
  lua_settop(L, 0);
  if (size > 4096)
    lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
