/* hook: see hook.h.  The table is rebuilt whole on every change: changes
 * are rare (a reload, a start/stop, a PUT) and a rebuild is a few
 * allocations per webhook, while a lookup is one hash probe. */
#include "hook.h"
#include "engine.h"
#include "lua_door.h"
#include "rejects.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IPF_MT "hookwork.ipfilter" /* lua_core.c's filters */

struct hw_hooks_s {
  hw_hook_t *hooks;
  int n;
  int *slots; /* open addressing: index + 1, 0 empty */
  size_t nslots;
  lua_State *L;
  int anchor; /* registry ref of the list (keeps its filters alive) */
};

static uint32_t hash(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  while (n--)
    h = (h ^ (unsigned char) *s++) * 16777619u;
  return h;
}

const hw_hook_t *hw_hooks_find(const hw_hooks_t *t, const char *token,
                               size_t n) {
  size_t i;
  if (t == NULL || t->nslots == 0)
    return NULL;
  for (i = hash(token, n) & (t->nslots - 1);; i = (i + 1) & (t->nslots - 1)) {
    int k = t->slots[i];
    const hw_hook_t *h;
    if (k == 0)
      return NULL;
    h = &t->hooks[k - 1];
    if (strlen(h->token) == n && memcmp(h->token, token, n) == 0)
      return h;
  }
}

unsigned hw_hook_method_bit(const char *m) {
  static const char *const names[] = {"GET",    "POST", "PUT",    "PATCH",
                                      "DELETE", "HEAD", "OPTIONS"};
  unsigned i;
  for (i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(m, names[i]) == 0)
      return 1u << i;
  return 0;
}

static void hook_clear(hw_hook_t *h) {
  int i;
  free(h->token);
  free(h->cycle);
  free(h->step);
  for (i = 0; i < h->nfields; i++)
    free((void *) h->fields[i].segs[0]);
  free(h->fields);
}

void hw_hooks_free(hw_hooks_t *t) {
  int i;
  if (t == NULL)
    return;
  for (i = 0; i < t->n; i++)
    hook_clear(&t->hooks[i]);
  free(t->hooks);
  free(t->slots);
  if (t->L != NULL && t->anchor != LUA_NOREF)
    luaL_unref(t->L, LUA_REGISTRYINDEX, t->anchor);
  free(t);
}

static int field_type(const char *s) {
  static const char *const names[] = {"string", "number", "integer", "boolean",
                                      "object", "array",  "any"};
  int i;
  for (i = 0; i < 7; i++)
    if (strcmp(s, names[i]) == 0)
      return i;
  return -1;
}

/* Splits name at '.' as U.split_path does (empty parts dropped); the
 * segments point into one copy (segs[0] owns it, at its start).  0, or -1
 * when the C path cannot take it (no segment, too many, no memory). */
static int field_split(hw_field_t *f, const char *name) {
  size_t n = strlen(name), i = 0;
  char *copy = malloc(n + 1);
  if (copy == NULL)
    return -1;
  memcpy(copy, name, n + 1);
  f->nseg = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && copy[j] != '.')
      j++;
    if (j > i) {
      if (f->nseg == HW_HOOK_MAX_SEGS) {
        free(copy);
        return -1;
      }
      f->segs[f->nseg] = copy + i;
      f->lens[f->nseg++] = j - i;
    }
    i = j + 1;
  }
  if (f->nseg == 0) {
    free(copy);
    return -1;
  }
  if (f->segs[0] != copy) { /* a leading '.': keep the copy owned */
    memmove(copy, f->segs[0], n + 1 - (size_t) (f->segs[0] - copy));
    for (i = 1; i < (size_t) f->nseg; i++)
      f->segs[i] -= f->segs[0] - copy;
    f->segs[0] = copy;
  }
  return 0;
}

static int seg_cmp(const hw_field_t *a, const hw_field_t *b, int *prefix) {
  int i;
  for (i = 0; i < a->nseg && i < b->nseg; i++) {
    size_t n = a->lens[i] < b->lens[i] ? a->lens[i] : b->lens[i];
    int c = memcmp(a->segs[i], b->segs[i], n);
    if (c == 0 && a->lens[i] != b->lens[i])
      c = a->lens[i] < b->lens[i] ? -1 : 1;
    if (c != 0)
      return c;
  }
  *prefix = 1;
  return a->nseg - b->nseg;
}

static int field_order(const void *x, const void *y) {
  int prefix = 0;
  return seg_cmp(x, y, &prefix);
}

/* The `fields` list at the top of L into h.  0, or -1 when the C path
 * cannot take this spec (then the webhook stays on the Lua path). */
static int compile_fields(lua_State *L, hw_hook_t *h) {
  int n = (int) lua_rawlen(L, -1), i;
  h->has_spec = 1;
  h->fields = calloc((size_t) (n > 0 ? n : 1), sizeof *h->fields);
  if (h->fields == NULL)
    return -1;
  for (i = 0; i < n; i++) {
    hw_field_t *f = &h->fields[i];
    const char *name, *type;
    lua_rawgeti(L, -1, i + 1);
    lua_getfield(L, -1, "name");
    lua_getfield(L, -2, "type");
    lua_getfield(L, -3, "optional");
    name = lua_tostring(L, -3);
    type = lua_tostring(L, -2);
    f->optional = lua_toboolean(L, -1);
    f->type = type ? field_type(type) : -1;
    if (name == NULL || f->type < 0 || field_split(f, name) != 0) {
      lua_pop(L, 4);
      return -1;
    }
    h->nfields++;
    lua_pop(L, 4);
  }
  qsort(h->fields, (size_t) h->nfields, sizeof *h->fields, field_order);
  /* "a" beside "a.b" (or a path twice) makes the Lua side merge into the
   * decoded table: not a case for slices */
  for (i = 1; i < h->nfields; i++) {
    int prefix = 0;
    seg_cmp(&h->fields[i - 1], &h->fields[i], &prefix);
    if (prefix)
      return -1;
  }
  return 0;
}

static char *field_str(lua_State *L, const char *k) {
  const char *s;
  char *c;
  lua_getfield(L, -1, k);
  s = lua_tostring(L, -1);
  c = s ? strdup(s) : NULL;
  lua_pop(L, 1);
  return c;
}

static int field_bool(lua_State *L, const char *k) {
  int b;
  lua_getfield(L, -1, k);
  b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* The entry on top of L into h.  0, or -1 out of memory. */
static int compile_hook(lua_State *L, hw_hook_t *h) {
  int i, n;
  h->token = field_str(L, "token");
  h->cycle = field_str(L, "cycle");
  h->step = field_str(L, "step");
  if (h->token == NULL || h->cycle == NULL || h->step == NULL)
    return -1;
  h->running = field_bool(L, "running");
  h->fast = field_bool(L, "fast");
  h->sync = field_bool(L, "sync");
  h->cors = field_bool(L, "cors");
  h->ip_filtered = field_bool(L, "ip_filtered");
  lua_getfield(L, -1, "filter");
  if (lua_type(L, -1) == LUA_TUSERDATA) {
    hw_ipfilter_t **p = luaL_testudata(L, -1, IPF_MT);
    h->filter = p ? *p : NULL;
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "methods");
  n = lua_istable(L, -1) ? (int) lua_rawlen(L, -1) : 0;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) == LUA_TSTRING)
      h->methods |= hw_hook_method_bit(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "fields");
  if (lua_istable(L, -1) && compile_fields(L, h) != 0)
    h->fast = 0;
  lua_pop(L, 1);
  /* verify and dedupe as compiled in C; one that needs Lua (an hmac
   * payload function, a key function) keeps the webhook on the Lua path */
  lua_getfield(L, -1, "verify");
  if (!lua_isnil(L, -1) && (h->verify = hw_lua_door_verify(L, -1)) == NULL)
    h->fast = 0;
  lua_pop(L, 1);
  lua_getfield(L, -1, "dedupe");
  if (!lua_isnil(L, -1) && (h->dedupe = hw_lua_door_dedupe(L, -1)) == NULL)
    h->fast = 0;
  lua_pop(L, 1);
  return 0;
}

static hw_hooks_t *build(lua_State *L, int list) {
  hw_hooks_t *t = calloc(1, sizeof *t);
  int n = (int) lua_rawlen(L, list), i;
  if (t == NULL)
    return NULL;
  t->anchor = LUA_NOREF;
  t->hooks = calloc((size_t) (n > 0 ? n : 1), sizeof *t->hooks);
  for (t->nslots = 8; t->nslots < (size_t) n * 2; t->nslots *= 2)
    ;
  t->slots = calloc(t->nslots, sizeof *t->slots);
  if (t->hooks == NULL || t->slots == NULL) {
    hw_hooks_free(t);
    return NULL;
  }
  for (i = 0; i < n; i++) {
    hw_hook_t *h = &t->hooks[t->n];
    size_t s;
    lua_rawgeti(L, list, i + 1);
    if (!lua_istable(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    t->n++;
    if (compile_hook(L, h) != 0) {
      lua_pop(L, 1);
      hw_hooks_free(t);
      return NULL;
    }
    lua_pop(L, 1);
    if (hw_hooks_find(t, h->token, strlen(h->token)) != NULL)
      continue; /* (tokens are unique; the first one stays) */
    for (s = hash(h->token, strlen(h->token)) & (t->nslots - 1); t->slots[s];
         s = (s + 1) & (t->nslots - 1))
      ;
    t->slots[s] = t->n;
  }
  return t;
}

static int l_hooks_set(lua_State *L) {
  hw_engine_t *e = lua_touserdata(L, lua_upvalueindex(1));
  hw_hooks_t *t;
  luaL_checktype(L, 1, LUA_TTABLE);
  t = build(L, 1);
  if (t == NULL)
    return luaL_error(L, "hooks_set: out of memory");
  t->L = e->L; /* (L may be a run's coroutine) */
  lua_pushvalue(L, 1);
  t->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  hw_hooks_free(e->hooks);
  e->hooks = t;
  return 0;
}

static int l_accept_paths(lua_State *L) {
  hw_engine_t *e = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushinteger(L, (lua_Integer) e->accepts.c_path);
  lua_pushinteger(L, (lua_Integer) e->accepts.c_rejected);
  lua_pushinteger(L, (lua_Integer) e->accepts.lua_path);
  return 3;
}

void hw_hook_fns(lua_State *L, void *engine) {
  static const luaL_Reg fns[] = {{"hooks_set", l_hooks_set},
                                 {"accept_paths", l_accept_paths},
                                 {"c_rejections", hw_rejects_lua_drain},
                                 {NULL, NULL}};
  lua_pushlightuserdata(L, engine);
  luaL_setfuncs(L, fns, 1);
}
