/* json: a strict JSON (RFC 8259) codec straight between text and Lua
 * values (see json.h for the rules on numbers and text): the decoder, the
 * shared buffers and the Lua module; the encoder is core/json_encode.c.
 *
 * Owns: the array metatable and the growable buffers of one decode or
 * encode.  A buffer lives in a userdata "box" on the Lua stack whose __gc
 * frees it, so a Lua memory error half-way leaks nothing; its memory comes
 * from the state's own allocator, so Lua memory limits count it.
 * Uses: Lua's C API; strtod/snprintf (the engine never calls setlocale, so
 * the decimal point is ".").
 *
 * Cost: one pass over the text, no intermediate tree; strings without
 * escapes are pushed straight from the input.  Recursion is bounded by
 * HW_JSON_MAX_DEPTH in both directions. */
#include "json.h"
#include "json_int.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char array_mt_key = 0; /* registry keys: their addresses */
static const char box_mt_key = 0;

/* --- buffer box ------------------------------------------------------ */

int hw_json__box_gc(lua_State *L) {
  box_t *b = lua_touserdata(L, 1);
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  if (b != NULL && b->p != NULL) {
    f(ud, b->p, b->cap, 0);
    b->p = NULL;
    b->cap = b->len = 0;
  }
  return 0;
}

box_t *hw_json__box_push(lua_State *L) {
  return hw_json__box_new(L, sizeof(box_t));
}

box_t *hw_json__box_new(lua_State *L, size_t size) {
  box_t *b = lua_newuserdatauv(L, size, 0);
  memset(b, 0, size);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &box_mt_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, hw_json__box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &box_mt_key);
  }
  lua_setmetatable(L, -2);
  return b;
}

/* Makes room for n more bytes; 0 or -1 (out of memory, buffer kept). */
int hw_json__box_reserve(lua_State *L, box_t *b, size_t n) {
  void *ud, *np;
  lua_Alloc f;
  size_t cap;
  if (b->cap - b->len >= n)
    return 0;
  if (n > SIZE_MAX / 2 - b->len)
    return -1;
  cap = b->cap ? b->cap : 256;
  while (cap - b->len < n)
    cap *= 2;
  f = lua_getallocf(L, &ud);
  np = f(ud, b->p, b->cap, cap);
  if (np == NULL)
    return -1;
  b->p = np;
  b->cap = cap;
  return 0;
}

/* --- shared helpers -------------------------------------------------- */

/* Length of the UTF-8 sequence at p (1 to 4), or 0 when it is not UTF-8:
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
int hw_json__utf8_seq(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  if (c < 0x80)
    return 1;
  if (c < 0xC2)
    return 0;
  if (c < 0xE0)
    return end - p >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
      return 0;
    if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] >= 0xA0))
      return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
        (p[3] & 0xC0) != 0x80)
      return 0;
    if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] >= 0x90))
      return 0;
    return 4;
  }
  return 0;
}

static int put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char) cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char) (0xC0 | (cp >> 6));
    o[1] = (char) (0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char) (0xE0 | (cp >> 12));
    o[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char) (0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char) (0xF0 | (cp >> 18));
  o[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char) (0x80 | (cp & 0x3F));
  return 4;
}

const char HW_JSON__REPLACEMENT[4] = "\xEF\xBF\xBD"; /* U+FFFD */

void hw_json_push_array_mt(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key) == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  /* protected: cycle code can neither read nor replace it */
  lua_pushliteral(L, "json.array");
  lua_setfield(L, -2, "__metatable");
  lua_pushliteral(L, "json.array");
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
}

int hw_json_is_marked(lua_State *L, int idx) {
  int marked;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
    return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
  marked = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return marked;
}

/* --- decoding -------------------------------------------------------- */

typedef struct {
  lua_State *L;
  const unsigned char *s, *p, *end;
  int flags, depth, arr_mt; /* arr_mt: stack index of the array metatable */
  box_t *scratch;
  char *err;
  size_t errlen;
} dec_t;

static int dec_fail(dec_t *d, const unsigned char *at, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(d->err, d->errlen, fmt, ap);
  va_end(ap);
  if (at != NULL && n >= 0 && (size_t) n < d->errlen)
    snprintf(d->err + n, d->errlen - (size_t) n, " at byte %zu",
             (size_t) (at - d->s) + 1);
  return -1;
}

static void skip_ws(dec_t *d) {
  const unsigned char *p = d->p;
  while (p < d->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  d->p = p;
}

int hw_json__is_word(unsigned c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == '_';
}

/* A token that is not JSON ("NaN", "0x10", "Infinity"): named in the
 * error, shown only as far as it is made of plain characters. */
static int dec_bad_word(dec_t *d, const unsigned char *at, const char *what) {
  const unsigned char *q = at;
  while (q < d->end && hw_json__is_word(*q) && q - at < 32)
    q++;
  if (q == at) {
    if (at >= d->end)
      return dec_fail(d, NULL, "unexpected end of input");
    if (*at >= 0x20 && *at < 0x7F)
      return dec_fail(d, at, "unexpected character '%c'", *at);
    return dec_fail(d, at, "unexpected byte 0x%02X", *at);
  }
  return dec_fail(d, at, "invalid %s '%.*s'", what, (int) (q - at),
                  (const char *) at);
}

static int dec_value(dec_t *d);

static int hexval(unsigned c) {
  if (c >= '0' && c <= '9')
    return (int) c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f')
    return (int) c - 'a' + 10;
  return -1;
}

static int hex4(const unsigned char *p, const unsigned char *end) {
  int v = 0, i, h;
  if (end - p < 4)
    return -1;
  for (i = 0; i < 4; i++) {
    if ((h = hexval(p[i])) < 0)
      return -1;
    v = v * 16 + h;
  }
  return v;
}

/* A string whose first escape or bad byte is at p: decoded through the
 * scratch buffer. */
static int dec_string_slow(dec_t *d, const unsigned char *start,
                           const unsigned char *p) {
  box_t *b = d->scratch;
  const unsigned char *end = d->end;
  b->len = 0;
  if (hw_json__box_reserve(d->L, b, (size_t) (p - start) + 16) != 0)
    return dec_fail(d, NULL, "out of memory");
  memcpy(b->p, start, (size_t) (p - start));
  b->len = (size_t) (p - start);
  for (;;) {
    const unsigned char *run = p;
    unsigned c;
    int n;
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
      p++;
    if (hw_json__box_reserve(d->L, b, (size_t) (p - run) + 8) != 0)
      return dec_fail(d, NULL, "out of memory");
    memcpy(b->p + b->len, run, (size_t) (p - run));
    b->len += (size_t) (p - run);
    if (p >= end)
      return dec_fail(d, NULL, "unterminated string");
    c = *p;
    if (c == '"') {
      lua_pushlstring(d->L, b->p, b->len);
      d->p = p + 1;
      return 0;
    }
    if (c < 0x20)
      return dec_fail(d, p, "control character 0x%02X in a string", c);
    if (c >= 0x80) {
      n = hw_json__utf8_seq(p, end);
      if (n > 0) {
        memcpy(b->p + b->len, p, (size_t) n);
      } else if (d->flags & HW_JSON_LAX) {
        memcpy(b->p + b->len, HW_JSON__REPLACEMENT, 3);
        n = 1;
        b->len += 2;
      } else {
        return dec_fail(d, p, "invalid UTF-8 in a string");
      }
      b->len += (size_t) n;
      p += n;
      continue;
    }
    /* an escape */
    if (p + 1 >= end)
      return dec_fail(d, NULL, "unterminated string");
    switch (p[1]) {
    case '"': case '\\': case '/':
      b->p[b->len++] = (char) p[1];
      break;
    case 'b': b->p[b->len++] = '\b'; break;
    case 'f': b->p[b->len++] = '\f'; break;
    case 'n': b->p[b->len++] = '\n'; break;
    case 'r': b->p[b->len++] = '\r'; break;
    case 't': b->p[b->len++] = '\t'; break;
    case 'u': {
      int cp = hex4(p + 2, end), lo;
      if (cp < 0)
        return dec_fail(d, p, "invalid \\u escape");
      p += 6;
      if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' &&
          p[1] == 'u' && (lo = hex4(p + 2, end)) >= 0xDC00 && lo <= 0xDFFF) {
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
      } else if (cp >= 0xD800 && cp <= 0xDFFF) {
        cp = 0xFFFD; /* a lone surrogate: documented in json.h */
      }
      b->len += (size_t) put_utf8(b->p + b->len, (unsigned) cp);
      continue;
    }
    default:
      if (p[1] >= 0x20 && p[1] < 0x7F)
        return dec_fail(d, p, "invalid escape '\\%c'", p[1]);
      return dec_fail(d, p, "invalid escape");
    }
    p += 2;
  }
}

static int dec_string(dec_t *d) {
  const unsigned char *start = d->p + 1, *p = start, *end = d->end;
  for (;;) {
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
      p++;
    if (p >= end)
      return dec_fail(d, NULL, "unterminated string");
    if (*p == '"') {
      lua_pushlstring(d->L, (const char *) start, (size_t) (p - start));
      d->p = p + 1;
      return 0;
    }
    if (*p >= 0x80) {
      int n = hw_json__utf8_seq(p, end);
      if (n > 0) {
        p += n;
        continue;
      }
    }
    return dec_string_slow(d, start, p);
  }
}

int hw_json__scan_number(const unsigned char *p, const unsigned char *end,
                         hw_json_num_t *n) {
  n->neg = n->overflow = 0;
  n->is_int = 1;
  n->acc = 0;
  if (p < end && *p == '-') {
    n->neg = 1;
    p++;
  }
  if (p >= end || *p < '0' || *p > '9')
    return HW_JSON__NUM_BAD;
  if (*p == '0') {
    p++;
    if (p < end && *p >= '0' && *p <= '9')
      return HW_JSON__NUM_ZEROS;
  } else {
    while (p < end && *p >= '0' && *p <= '9') {
      unsigned dig = *p - '0';
      if (n->acc > (UINT64_MAX - dig) / 10)
        n->overflow = 1;
      else
        n->acc = n->acc * 10 + dig;
      p++;
    }
  }
  if (p < end && *p == '.') {
    n->is_int = 0;
    p++;
    if (p >= end || *p < '0' || *p > '9')
      return HW_JSON__NUM_BAD;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    n->is_int = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      p++;
    if (p >= end || *p < '0' || *p > '9')
      return HW_JSON__NUM_BAD;
    while (p < end && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < end && hw_json__is_word(*p))
    return HW_JSON__NUM_BAD;
  n->end = p;
  return 0;
}

static int dec_number(dec_t *d) {
  const unsigned char *start = d->p, *p;
  hw_json_num_t num;
  int neg, is_int, overflow, rc;
  uint64_t acc;
  char small[64], *text;
  double v;

  rc = hw_json__scan_number(start, d->end, &num);
  if (rc == HW_JSON__NUM_ZEROS)
    return dec_fail(d, start, "leading zeros are not allowed in a number");
  if (rc != 0)
    return dec_bad_word(d, start, "number");
  p = num.end;
  neg = num.neg, is_int = num.is_int, overflow = num.overflow, acc = num.acc;
  d->p = p;
  if (is_int && !overflow) {
    if (!neg && acc <= (uint64_t) INT64_MAX) {
      lua_pushinteger(d->L, (lua_Integer) acc);
      return 0;
    }
    if (neg && acc <= (uint64_t) INT64_MAX + 1) {
      /* -0 stays a float: its sign survives the round trip */
      if (acc == 0)
        lua_pushnumber(d->L, -0.0);
      else
        lua_pushinteger(d->L, (lua_Integer) (0 - acc));
      return 0;
    }
  }
  /* strtod needs a terminated copy (the input may go on with more digits
   * of something else) */
  if ((size_t) (p - start) < sizeof small) {
    text = small;
  } else {
    d->scratch->len = 0;
    if (hw_json__box_reserve(d->L, d->scratch, (size_t) (p - start) + 1) != 0)
      return dec_fail(d, NULL, "out of memory");
    text = d->scratch->p;
  }
  memcpy(text, start, (size_t) (p - start));
  text[p - start] = '\0';
  v = strtod(text, NULL);
  if (isinf(v)) {
    if (p - start > 24)
      return dec_fail(d, start, "number out of range");
    return dec_fail(d, start, "number out of range: %s", text);
  }
  lua_pushnumber(d->L, v);
  return 0;
}

static int dec_literal(dec_t *d, const char *word, size_t n) {
  const unsigned char *p = d->p;
  if ((size_t) (d->end - p) < n || memcmp(p, word, n) != 0 ||
      (p + n < d->end && hw_json__is_word(p[n])))
    return dec_bad_word(d, p, "value");
  d->p = p + n;
  return 0;
}

static int dec_enter(dec_t *d) {
  if (++d->depth > HW_JSON_MAX_DEPTH)
    return dec_fail(d, d->p, "nesting deeper than %d", HW_JSON_MAX_DEPTH);
  if (!lua_checkstack(d->L, 4))
    return dec_fail(d, d->p, "nesting too deep");
  return 0;
}

static int dec_array(dec_t *d) {
  lua_State *L = d->L;
  lua_Integer i = 0;
  if (dec_enter(d) != 0)
    return -1;
  d->p++;
  lua_createtable(L, 0, 0);
  lua_pushvalue(L, d->arr_mt);
  lua_setmetatable(L, -2);
  skip_ws(d);
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    d->depth--;
    return 0;
  }
  for (;;) {
    if (dec_value(d) != 0)
      return -1;
    lua_rawseti(L, -2, ++i);
    skip_ws(d);
    if (d->p >= d->end)
      return dec_fail(d, NULL, "unexpected end of input in an array");
    if (*d->p == ']') {
      d->p++;
      d->depth--;
      return 0;
    }
    if (*d->p != ',')
      return dec_fail(d, d->p, "expected ',' or ']' in an array");
    d->p++;
    skip_ws(d);
    if (d->p < d->end && *d->p == ']')
      return dec_fail(d, d->p, "trailing comma");
  }
}

static int dec_object(dec_t *d) {
  lua_State *L = d->L;
  if (dec_enter(d) != 0)
    return -1;
  d->p++;
  lua_createtable(L, 0, 0);
  skip_ws(d);
  if (d->p < d->end && *d->p == '}') {
    d->p++;
    d->depth--;
    return 0;
  }
  for (;;) {
    if (d->p >= d->end)
      return dec_fail(d, NULL, "unexpected end of input in an object");
    if (*d->p != '"')
      return dec_fail(d, d->p, "expected a string key in an object");
    if (dec_string(d) != 0)
      return -1;
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':')
      return dec_fail(d, d->p < d->end ? d->p : NULL,
                      "expected ':' after a key");
    d->p++;
    if (dec_value(d) != 0)
      return -1;
    lua_rawset(L, -3); /* a repeated key: the last one wins */
    skip_ws(d);
    if (d->p >= d->end)
      return dec_fail(d, NULL, "unexpected end of input in an object");
    if (*d->p == '}') {
      d->p++;
      d->depth--;
      return 0;
    }
    if (*d->p != ',')
      return dec_fail(d, d->p, "expected ',' or '}' in an object");
    d->p++;
    skip_ws(d);
    if (d->p < d->end && *d->p == '}')
      return dec_fail(d, d->p, "trailing comma");
  }
}

static int dec_value(dec_t *d) {
  skip_ws(d);
  if (d->p >= d->end)
    return dec_fail(d, NULL, "unexpected end of input");
  switch (*d->p) {
  case '{': return dec_object(d);
  case '[': return dec_array(d);
  case '"': return dec_string(d);
  case 't':
    if (dec_literal(d, "true", 4) != 0)
      return -1;
    lua_pushboolean(d->L, 1);
    return 0;
  case 'f':
    if (dec_literal(d, "false", 5) != 0)
      return -1;
    lua_pushboolean(d->L, 0);
    return 0;
  case 'n':
    if (dec_literal(d, "null", 4) != 0)
      return -1;
    lua_pushlightuserdata(d->L, NULL);
    return 0;
  default:
    if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9'))
      return dec_number(d);
    return dec_bad_word(d, d->p, "value");
  }
}

int hw_json_decode(lua_State *L, const char *s, size_t n, int flags,
                   char *err, size_t errlen) {
  int base = lua_gettop(L), rc;
  dec_t d;

  luaL_checkstack(L, 6, "json.decode");
  memset(&d, 0, sizeof d);
  d.L = L;
  d.s = d.p = (const unsigned char *) s;
  d.end = d.s + n;
  d.flags = flags;
  d.err = err;
  d.errlen = errlen;
  hw_json_push_array_mt(L);
  d.arr_mt = base + 1;
  d.scratch = hw_json__box_push(L);
  rc = dec_value(&d);
  if (rc == 0) {
    skip_ws(&d);
    if (d.p < d.end)
      rc = dec_fail(&d, d.p, "unexpected data after the JSON value");
  }
  lua_pushcfunction(L, hw_json__box_gc); /* free the scratch now, not at a GC */
  lua_pushvalue(L, base + 2);
  lua_call(L, 1, 0);
  if (rc != 0) {
    lua_settop(L, base);
    return -1;
  }
  lua_replace(L, base + 1);
  lua_settop(L, base + 1);
  return 0;
}

/* --- the Lua module -------------------------------------------------- */

/* encode(v [, root]): the JSON text, or raises "ROOT.path: reason" (no
 * position prefix: the path says where). */
static int l_json_encode(lua_State *L) {
  char err[512];
  const char *root = luaL_optstring(L, 2, "value");
  luaL_checkany(L, 1);
  if (hw_json_encode(L, 1, root, err, sizeof err) != 0) {
    lua_pushstring(L, err);
    return lua_error(L);
  }
  return 1;
}

/* decode(s [, "lax"]): the value, or nil and a message. */
static int l_json_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  const char *mode = luaL_optstring(L, 2, "strict");
  char err[256];
  int flags = 0;
  if (strcmp(mode, "lax") == 0)
    flags = HW_JSON_LAX;
  else if (strcmp(mode, "strict") != 0)
    return luaL_argerror(L, 2, "expected \"strict\" or \"lax\"");
  if (hw_json_decode(L, s, n, flags, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

/* array([t]): marks t (or a new table) as a JSON array and returns it. */
static int l_json_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  if (hw_json_is_marked(L, 1))
    return 1;
  if (lua_getmetatable(L, 1))
    return luaL_error(L, "json.array: the table already has a metatable");
  hw_json_push_array_mt(L);
  lua_setmetatable(L, 1);
  return 1;
}

static int l_json_is_array(lua_State *L) {
  lua_pushboolean(L, hw_json_is_marked(L, 1));
  return 1;
}

/* utf8_clean(s): s with every byte that is not part of a UTF-8 sequence
 * replaced by U+FFFD (s itself when it is valid). */
static int l_json_utf8_clean(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *) luaL_checklstring(L, 1, &n);
  const unsigned char *p = s, *end = s + n;
  luaL_Buffer b;
  int k;
  while (p < end && (k = hw_json__utf8_seq(p, end)) > 0)
    p += k;
  if (p == end) {
    lua_settop(L, 1);
    return 1;
  }
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, (const char *) s, (size_t) (p - s));
  while (p < end) {
    k = hw_json__utf8_seq(p, end);
    if (k > 0) {
      luaL_addlstring(&b, (const char *) p, (size_t) k);
      p += k;
    } else {
      luaL_addlstring(&b, HW_JSON__REPLACEMENT, 3);
      p++;
    }
  }
  luaL_pushresult(&b);
  return 1;
}

int hw_json_open(lua_State *L) {
  static const luaL_Reg fns[] = {{"encode", l_json_encode},
                                 {"decode", l_json_decode},
                                 {"array", l_json_array},
                                 {"is_array", l_json_is_array},
                                 {"utf8_clean", l_json_utf8_clean},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
