/* jscan: a one-pass reader of JSON text for the C accept path.  It checks
 * that a body is JSON exactly as core/json.c's strict decoder would accept
 * it, and finds members by name in the text, with no allocation and no Lua
 * state: what it hands back are slices of the text itself, so the data a
 * request stores is assembled from the raw bytes, never re-encoded.
 *
 * Owns: nothing (every function reads caller memory).
 * Uses: libc only (strtod), so the unit tests and the fuzz harness link it
 * alone.
 *
 * The decoder's rules it follows: whitespace is space, tab, CR and LF; at
 * most HW_JSON_MAX_DEPTH levels; strings are UTF-8 without control bytes
 * and with the RFC 8259 escapes; numbers follow the RFC grammar, and one
 * that overflows a double (1e999) is refused.  A repeated key is allowed
 * (the decoder keeps the last one; so does hw_jscan_member). */
#ifndef HW_JSCAN_H
#define HW_JSCAN_H

#include <stddef.h>
#include <stdint.h>

typedef struct hw_jslice_s {
  const char *p;
  size_t n;
} hw_jslice_t;

/* 0 when s[0..n) is one JSON value (with optional whitespace around it)
 * that core/json.c decodes without error, -1 otherwise.  *root (may be
 * NULL) gets the value without the whitespace. */
int hw_jscan_check(const char *s, size_t n, hw_jslice_t *root);

/* Walks the members of a checked object: *pos starts at the object's
 * '{'; each call gives the next key (raw text between the quotes, escapes
 * kept) and value slice and returns 1, or 0 after the last member. */
int hw_jscan_next(const char **pos, const char *end, hw_jslice_t *key,
                  hw_jslice_t *val);

/* The value of member `key` (plain bytes) of the checked object obj (its
 * '{' .. '}'): 1 with *val set (the last such member, as the decoder
 * keeps), 0 when absent, -1 when the object has a key written with
 * escapes (it might name `key`: the caller cannot decide). */
int hw_jscan_member(hw_jslice_t obj, const char *key, size_t klen,
                    hw_jslice_t *val);

/* For a checked number: 1 when the value the decoder gives is an integer
 * as Lua's math.tointeger sees it (an int64 literal, or a double with no
 * fraction inside the int64 range), with *out set; 0 otherwise. */
int hw_jscan_integer(hw_jslice_t num, int64_t *out, int *literal);

/* What the door needs besides (verify.c's JWT claims, dedupe.c's keys): */

/* Walks the elements of a checked array: *pos starts at its '['; 1 with
 * *val per element, 0 after the last. */
int hw_jscan_elem(const char **pos, const char *end, hw_jslice_t *val);

/* Like hw_jscan_member, but a key written with escapes is decoded and
 * compared (never -1): for values that must not hide behind "\u0065xp". */
int hw_jscan_find(hw_jslice_t obj, const char *key, size_t klen,
                  hw_jslice_t *val);

/* A checked string (its slice, quotes included) unescaped into out (cap
 * bytes): 0 with *len, or -E2BIG with *len the room needed.  A lone
 * surrogate escape becomes U+FFFD, as core/json.c decodes it. */
int hw_jscan_string(hw_jslice_t str, char *out, size_t cap, size_t *len);

/* 1 when the checked string str, unescaped, is s[0..n). */
int hw_jscan_equal(hw_jslice_t str, const char *s, size_t n);

/* A checked number as the double the decoder would give. */
double hw_jscan_double(hw_jslice_t num);

#endif
