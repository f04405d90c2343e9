/* json_int: what core/json.c and core/json_encode.c share, and nothing
 * else may use: the buffer box (a userdata whose __gc frees its bytes,
 * allocated with the state's own allocator) and the UTF-8 check. */
#ifndef HW_JSON_INT_H
#define HW_JSON_INT_H

#include <lua.h>
#include <stddef.h>

typedef struct {
  char *p;
  size_t len, cap;
} box_t;

/* Pushes an empty box. */
box_t *hw_json__box_push(lua_State *L);
/* Pushes an empty box of size bytes (>= sizeof(box_t), the box first and
 * the caller's fields after it, zeroed). */
box_t *hw_json__box_new(lua_State *L, size_t size);
/* Makes room for n more bytes; 0 or -1 (out of memory, buffer kept). */
int hw_json__box_reserve(lua_State *L, box_t *b, size_t n);
/* The box's __gc: frees its bytes (callable early, idempotent). */
int hw_json__box_gc(lua_State *L);
/* Length of the UTF-8 sequence at p (1 to 4), or 0 when it is not UTF-8:
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
int hw_json__utf8_seq(const unsigned char *p, const unsigned char *end);

extern const char HW_JSON__REPLACEMENT[4]; /* U+FFFD in UTF-8 */

#endif
