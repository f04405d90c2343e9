/* json_encode: Lua values to JSON text (the encoding half of core/json.c;
 * the rules are in json.h).
 *
 * Owns: the path of the value being encoded, kept so an error names where
 * the unstorable value is (`tx.data.items[3].price: cannot store nan`).
 * Uses: json_int.h (buffer box, UTF-8 check); only raw table access, so no
 * metamethod of the data runs while it is encoded.  Recursion is bounded
 * by HW_JSON_MAX_DEPTH; a table met again on its own path is a cycle. */
#include "json.h"
#include "json_int.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

/* --- encoding -------------------------------------------------------- */

typedef struct {
  lua_State *L;
  box_t *out;
  int depth, oom;
  const void *seen[HW_JSON_MAX_DEPTH + 1];
  struct {
    lua_Integer index; /* an array element, or 0: the key at key_idx */
    int key_idx;
  } path[HW_JSON_MAX_DEPTH + 1];
  const char *root;
  char *err;
  size_t errlen;
} enc_t;

/* Appends one path element to buf (bounded), as Lua would write it. */
static size_t path_elem(lua_State *L, char *buf, size_t cap, size_t n,
                        lua_Integer index, int key_idx) {
  size_t klen, i;
  const char *k;
  int ident;

  if (index == 0 && key_idx == 0)
    return n; /* the key itself is the problem: the table's path says it */
#define ADD(...) \
  do { \
    int w_ = snprintf(buf + n, n < cap ? cap - n : 0, __VA_ARGS__); \
    if (w_ > 0) n += (size_t) w_; \
  } while (0)
  if (index != 0 || lua_type(L, key_idx) != LUA_TSTRING) {
    if (index == 0 && lua_isinteger(L, key_idx))
      index = lua_tointeger(L, key_idx);
    if (index != 0)
      ADD("[%lld]", (long long) index);
    else if (lua_type(L, key_idx) == LUA_TNUMBER)
      ADD("[%.17g]", (double) lua_tonumber(L, key_idx));
    else
      ADD("[?]");
    return n;
  }
  k = lua_tolstring(L, key_idx, &klen); /* a string already: no change */
  ident = klen > 0 && !(k[0] >= '0' && k[0] <= '9');
  for (i = 0; i < klen && ident; i++)
    ident = (k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
            (k[i] >= '0' && k[i] <= '9') || k[i] == '_';
  if (ident && klen <= 64) {
    ADD(".%.*s", (int) klen, k);
    return n;
  }
  ADD("[\"");
  for (i = 0; i < klen && i < 40; i++) {
    unsigned char c = (unsigned char) k[i];
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
      ADD("%c", c);
    else
      ADD("\\x%02X", c);
  }
  ADD("%s\"]", klen > 40 ? "..." : "");
#undef ADD
  return n;
}

static int enc_fail(enc_t *e, const char *fmt, ...) {
  char path[400];
  size_t n = 0;
  int i;
  va_list ap;

  n = (size_t) snprintf(path, sizeof path, "%s", e->root);
  for (i = 0; i < e->depth && n < sizeof path; i++)
    n = path_elem(e->L, path, sizeof path, n, e->path[i].index,
                  e->path[i].key_idx);
  if (n >= sizeof path)
    memcpy(path + sizeof path - 4, "...", 4);
  n = (size_t) snprintf(e->err, e->errlen, "%s: ", path);
  if (n < e->errlen) {
    va_start(ap, fmt);
    vsnprintf(e->err + n, e->errlen - n, fmt, ap);
    va_end(ap);
  }
  return -1;
}

static inline int put(enc_t *e, const char *s, size_t n) {
  box_t *b = e->out;
  if (b->cap - b->len >= n) { /* the common case, without a call */
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
  }
  if (hw_json__box_reserve(e->L, e->out, n) != 0) {
    e->oom = 1;
    return enc_fail(e, "out of memory");
  }
  memcpy(e->out->p + e->out->len, s, n);
  e->out->len += n;
  return 0;
}

static int enc_string(enc_t *e, const char *str, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *) str, *end = p + len;
  if (put(e, "\"", 1) != 0)
    return -1;
  while (p < end) {
    const unsigned char *run = p;
    char esc[6];
    size_t n = 0;
    while (p < end && *p >= 0x20 && *p != '"' && *p != '\\') {
      if (*p < 0x80) {
        p++;
      } else {
        int k = hw_json__utf8_seq(p, end);
        if (k == 0)
          break;
        p += k;
      }
    }
    if (p > run && put(e, (const char *) run, (size_t) (p - run)) != 0)
      return -1;
    if (p >= end)
      break;
    switch (*p) {
    case '"': memcpy(esc, "\\\"", 2); n = 2; break;
    case '\\': memcpy(esc, "\\\\", 2); n = 2; break;
    case '\n': memcpy(esc, "\\n", 2); n = 2; break;
    case '\r': memcpy(esc, "\\r", 2); n = 2; break;
    case '\t': memcpy(esc, "\\t", 2); n = 2; break;
    case '\b': memcpy(esc, "\\b", 2); n = 2; break;
    case '\f': memcpy(esc, "\\f", 2); n = 2; break;
    default:
      if (*p < 0x20) {
        memcpy(esc, "\\u00", 4);
        esc[4] = hex[*p >> 4];
        esc[5] = hex[*p & 15];
        n = 6;
      } else { /* not UTF-8: one U+FFFD per bad byte */
        memcpy(esc, HW_JSON__REPLACEMENT, 3);
        n = 3;
      }
    }
    if (put(e, esc, n) != 0)
      return -1;
    p++;
  }
  return put(e, "\"", 1);
}

/* Shortest of %.15g..%.17g that reads back as v; ".0" keeps an integral
 * double a float when read back. */
static int fmt_double(char *buf, size_t cap, double v) {
  int n = 0, prec;
  for (prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, cap, "%.*g", prec, v);
    if (strtod(buf, NULL) == v)
      break;
  }
  if (strpbrk(buf, ".eE") == NULL && (size_t) n + 2 < cap) {
    buf[n++] = '.';
    buf[n++] = '0';
    buf[n] = '\0';
  }
  return n;
}

/* Decimal digits of an integer, written backwards from the end of buf
 * (snprintf is the cost of a large array of numbers). */
static int fmt_int(char *buf, size_t cap, lua_Integer v) {
  char *p = buf + cap;
  uint64_t u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;
  int n;
  do {
    *--p = (char) ('0' + (int) (u % 10));
    u /= 10;
  } while (u != 0);
  if (v < 0)
    *--p = '-';
  n = (int) (buf + cap - p);
  memmove(buf, p, (size_t) n);
  return n;
}

static int enc_number(enc_t *e, int idx) {
  char buf[40];
  int n;
  if (lua_isinteger(e->L, idx)) {
    n = fmt_int(buf, sizeof buf, lua_tointeger(e->L, idx));
  } else {
    double v = (double) lua_tonumber(e->L, idx);
    if (isnan(v))
      return enc_fail(e, "cannot store nan");
    if (isinf(v))
      return enc_fail(e, "cannot store %s", v > 0 ? "inf" : "-inf");
    n = fmt_double(buf, sizeof buf, v);
  }
  return put(e, buf, (size_t) n);
}

static int enc_value(enc_t *e, int idx);

static int enc_key(enc_t *e, int kidx) {
  char buf[40];
  int n;
  switch (lua_type(e->L, kidx)) {
  case LUA_TSTRING: {
    size_t len;
    const char *k = lua_tolstring(e->L, kidx, &len);
    return enc_string(e, k, len);
  }
  case LUA_TNUMBER:
    if (lua_isinteger(e->L, kidx))
      n = snprintf(buf, sizeof buf, "\"%lld\"",
                   (long long) lua_tointeger(e->L, kidx));
    else {
      double v = (double) lua_tonumber(e->L, kidx);
      if (isnan(v) || isinf(v))
        return enc_fail(e, "cannot store a key that is not finite");
      buf[0] = '"';
      n = 1 + fmt_double(buf + 1, sizeof buf - 2, v);
      buf[n++] = '"';
    }
    return put(e, buf, (size_t) n);
  default:
    return enc_fail(e, "cannot store a key of type %s",
                    luaL_typename(e->L, kidx));
  }
}

/* A table is an array when it carries the array metatable and is empty,
 * or when its keys are exactly positive integers not too sparse (at most
 * 10, or at most twice the number of entries: holes become null);
 * otherwise an object. */
static int enc_table(enc_t *e, int idx) {
  lua_State *L = e->L;
  const void *ptr = lua_topointer(L, idx);
  lua_Integer count = 0, max = 0, i;
  int allint = 1, seq = 1, d, first = 1;
  size_t start;

  if (e->depth >= HW_JSON_MAX_DEPTH)
    return enc_fail(e, "nesting deeper than %d", HW_JSON_MAX_DEPTH);
  for (d = 0; d < e->depth; d++)
    if (e->seen[d] == ptr)
      return enc_fail(e, "cannot store a table that contains itself");
  if (!lua_checkstack(L, 4))
    return enc_fail(e, "nesting too deep");
  e->seen[e->depth] = ptr;
  e->path[e->depth].index = 0;
  e->path[e->depth].key_idx = 0;
  e->depth++;
  /* One pass that writes an array while the keys come as 1, 2, 3... (a
   * sequence in the array part does), and otherwise only classifies; the
   * text written so far is dropped when the guess fails. */
  start = e->out->len;
  if (put(e, "[", 1) != 0)
    return -1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int isint = lua_type(L, -2) == LUA_TNUMBER && lua_isinteger(L, -2);
    lua_Integer k = isint ? lua_tointeger(L, -2) : 0;
    count++;
    if (seq) {
      if (isint && k == count) {
        e->path[e->depth - 1].index = k;
        if ((k > 1 && put(e, ",", 1) != 0) || enc_value(e, lua_gettop(L)) != 0)
          return -1;
        max = k;
      } else {
        seq = 0;
      }
    }
    if (!seq && allint) {
      if (isint && k >= 1) {
        if (k > max)
          max = k;
      } else {
        allint = 0;
      }
    }
    lua_pop(L, 1);
  }
  if (seq && count > 0) {
    e->depth--;
    return put(e, "]", 1);
  }
  e->out->len = start;
  if (count == 0) {
    e->depth--;
    return hw_json_is_marked(L, idx) ? put(e, "[]", 2) : put(e, "{}", 2);
  }
  if (allint && (max <= 10 || max / 2 <= count)) {
    if (put(e, "[", 1) != 0)
      return -1;
    for (i = 1; i <= max; i++) {
      if (i > 1 && put(e, ",", 1) != 0)
        return -1;
      e->path[e->depth - 1].index = i;
      lua_rawgeti(L, idx, i);
      if (enc_value(e, lua_gettop(L)) != 0)
        return -1;
      lua_pop(L, 1);
    }
    e->depth--;
    return put(e, "]", 1);
  }
  if (put(e, "{", 1) != 0)
    return -1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int top = lua_gettop(L);
    e->path[e->depth - 1].index = 0;
    e->path[e->depth - 1].key_idx = 0;
    if ((!first && put(e, ",", 1) != 0) || enc_key(e, top - 1) != 0 ||
        put(e, ":", 1) != 0)
      return -1;
    e->path[e->depth - 1].key_idx = top - 1;
    if (enc_value(e, top) != 0)
      return -1;
    first = 0;
    lua_pop(L, 1);
  }
  e->depth--;
  return put(e, "}", 1);
}

static int enc_value(enc_t *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return put(e, "null", 4);
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? put(e, "true", 4) : put(e, "false", 5);
  case LUA_TNUMBER:
    return enc_number(e, idx);
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return enc_string(e, s, len);
  }
  case LUA_TTABLE:
    return enc_table(e, idx);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL)
      return put(e, "null", 4);
    return enc_fail(e, "cannot store a userdata");
  default:
    return enc_fail(e, "cannot store a %s", luaL_typename(L, idx));
  }
}

/* The output buffer kept between encodes (one per Lua state, in the
 * registry): most encodes are small, and a fresh box each time cost a
 * userdata, a malloc and a free per call.  busy guards the rare nested
 * encode (a finalizer run by a GC step inside an encode), which gets a box
 * of its own. */
typedef struct {
  box_t b;
  int busy;
} kept_t;

static const char kept_key = 0;
#define KEPT_MAX (64 * 1024) /* a bigger buffer is freed after the encode */

static kept_t *kept_get(lua_State *L) {
  kept_t *k;

  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &kept_key) == LUA_TUSERDATA) {
    k = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return k;
  }
  lua_pop(L, 1);
  k = (kept_t *) hw_json__box_new(L, sizeof *k);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kept_key);
  return k;
}

int hw_json_encode(lua_State *L, int idx, const char *root, char *err,
                   size_t errlen) {
  int base = lua_gettop(L), rc;
  /* ~5 KiB of path state on the C stack (a userdata was an allocation per
   * encode); only the header is cleared: seen[] and path[] are written
   * before they are read, up to depth */
  enc_t e;
  kept_t *k;

  idx = lua_absindex(L, idx);
  luaL_checkstack(L, 6, "json.encode");
  memset(&e, 0, offsetof(enc_t, seen));
  e.L = L;
  e.root = root;
  e.err = err;
  e.errlen = errlen;
  k = kept_get(L);
  if (k->busy) {
    e.out = hw_json__box_push(L);
    rc = enc_value(&e, idx);
    if (rc == 0)
      lua_pushlstring(L, e.out->p, e.out->len);
    lua_pushcfunction(L, hw_json__box_gc); /* free the buffer now, not at a GC */
    lua_pushvalue(L, base + 1);
    lua_call(L, 1, 0);
    if (rc == 0)
      lua_replace(L, base + 1); /* the text over the box */
  } else {
    /* busy stays set if a memory error unwinds through here: later
     * encodes then fall back to fresh boxes, still correct */
    k->busy = 1;
    k->b.len = 0;
    e.out = &k->b;
    rc = enc_value(&e, idx);
    if (rc == 0)
      lua_pushlstring(L, e.out->p, e.out->len);
    if (k->b.cap > KEPT_MAX) {
      void *ud;
      lua_Alloc f = lua_getallocf(L, &ud);
      f(ud, k->b.p, k->b.cap, 0);
      k->b.p = NULL;
      k->b.cap = 0;
    }
    k->b.len = 0;
    k->busy = 0;
  }
  lua_settop(L, rc == 0 ? base + 1 : base);
  return rc == 0 ? 0 : -1;
}

