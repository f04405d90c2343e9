/* json_int: what core/json.c, core/json_encode.c and core/jscan.c (the C
 * accept path's scanner, which must accept exactly what the decoder does)
 * share, and nothing else may use: the buffer box (a userdata whose __gc
 * frees its bytes, allocated with the state's own allocator), the UTF-8
 * check and the number grammar. */
#ifndef HW_JSON_INT_H
#define HW_JSON_INT_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

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

/* Whether c may be part of a bare word ("NaN", "0x10"): a number or
 * literal followed by one is not JSON. */
int hw_json__is_word(unsigned c);

/* A JSON number at p (RFC 8259's grammar, not followed by a word
 * character): 0 with n filled in, HW_JSON__NUM_ZEROS for a leading zero
 * ("012"), HW_JSON__NUM_BAD for anything else that is not a number. */
typedef struct {
  const unsigned char *end; /* just past the number */
  int neg, is_int;          /* is_int: no fraction, no exponent */
  int overflow;             /* the digits do not fit in acc */
  uint64_t acc;             /* the digits' value (is_int only) */
} hw_json_num_t;
#define HW_JSON__NUM_BAD (-1)
#define HW_JSON__NUM_ZEROS (-2)
int hw_json__scan_number(const unsigned char *p, const unsigned char *end,
                         hw_json_num_t *n);

extern const char HW_JSON__REPLACEMENT[4]; /* U+FFFD in UTF-8 */

#endif
