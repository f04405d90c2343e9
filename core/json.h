/* json: a strict JSON (RFC 8259) codec working straight between JSON text
 * and Lua values, and the `hookwork.json` Lua module built on it.
 *
 * Owns: the array metatable (one per lua_State, in the registry) that marks
 * a decoded or `json.array`-marked table as a JSON array, so `[]` encodes
 * back as `[]`; the null sentinel (a NULL light userdata, as lua-cjson's).
 * Uses: Lua 5.4's C API only (no engine state), so the unit tests and the
 * fuzz harness link it alone.
 *
 * Numbers: an integer literal within int64 decodes to a Lua integer with
 * every digit; any other number to a double; a number that overflows a
 * double (1e999) is an error.  Integers encode exactly; doubles encode with
 * the shortest of %.15g/%.16g/%.17g that reads back to the same double, with
 * ".0" added to an integral double so it decodes back as a float.
 *
 * Text: decoding refuses bytes that are not UTF-8 (HW_JSON_LAX, for reading
 * the engine's own older store rows, replaces them with U+FFFD instead); an
 * escaped lone surrogate (\ud800 without its pair) decodes to U+FFFD.
 * Encoding always produces valid UTF-8: a byte sequence that is not UTF-8
 * in a Lua string is written as U+FFFD.  "/" is not escaped. */
#ifndef HW_JSON_H
#define HW_JSON_H

#include <lua.h>
#include <stddef.h>

#define HW_JSON_MAX_DEPTH 200

/* Decoding flags. */
#define HW_JSON_LAX 1 /* invalid UTF-8 in strings becomes U+FFFD */

/* Decodes the JSON text s[0..n) and pushes its value (JSON null as the
 * null sentinel).  Returns 0, or -1 with nothing pushed and a message
 * ("invalid number '0x10' at byte 1") in err.  Raises only Lua memory
 * errors. */
int hw_json_decode(lua_State *L, const char *s, size_t n, int flags,
                   char *err, size_t errlen);

/* Encodes the value at idx.  Returns 0 with the text pushed as a string, or
 * -1 with nothing pushed and a message naming the path from `root` in err
 * ("tx.data.ratio: cannot store inf").  Raises only Lua memory errors. */
int hw_json_encode(lua_State *L, int idx, const char *root, char *err,
                   size_t errlen);

/* Pushes the array metatable (made on first use). */
void hw_json_push_array_mt(lua_State *L);

/* 1 when the table at idx carries the array metatable. */
int hw_json_is_marked(lua_State *L, int idx);

/* The `hookwork.json` module: encode, decode, null, array, is_array,
 * utf8_clean. */
int hw_json_open(lua_State *L);

#endif
