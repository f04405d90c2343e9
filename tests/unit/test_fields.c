/* Unit tests for the Custom Fields rules (lua/hookwork/fields.lua): each
 * case is a small Lua function run in a plain Lua state that loads the
 * engine's modules from lua/. */
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>

#include "json.h"

static const char prelude[] =
  "local F = require 'hookwork.fields'\n"
  "local function req(body, ct) return { body = body, headers = {"
  " ['content-type'] = ct or 'application/json' } } end\n"
  "local function run(spec, body, ct)\n"
  "  local s = spec and assert(F.compile(spec))\n"
  "  local r = req(body, ct)\n"
  "  local obj, form, kind = F.parse_body(r)\n"
  "  if obj == nil then return nil, form, 400 end\n"
  "  return F.to_data(s, obj, form, kind, F.media_type(r.headers))\n"
  "end\n"
  "return { F = F, run = run, req = req }\n";

static int run_case(const char *code) {
  lua_State *L = luaL_newstate();
  int ok;
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, hw_json_open);
  lua_setfield(L, -2, "hookwork.json");
  lua_pop(L, 1);
  (void) luaL_dostring(L, "package.path = 'lua/?.lua;' .. package.path");
  if (luaL_loadstring(L, prelude) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "  prelude: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 0;
  }
  lua_setglobal(L, "T");
  ok = luaL_dostring(L, code) == LUA_OK;
  if (!ok)
    fprintf(stderr, "  %s\n", lua_tostring(L, -1));
  lua_close(L);
  return ok;
}

#define LUA_CASE(name, code) TEST(name) { ASSERT_TRUE(run_case(code)); }

LUA_CASE(missing_field_named,
  "local d, e = T.run({ amount = 'number' }, '{}')\n"
  "assert(d == nil and e == \"field 'amount': missing (expected number)\", e)")

LUA_CASE(mistyped_field_named,
  "local d, e = T.run({ amount = 'number' }, '{\"amount\":\"12\"}')\n"
  "assert(e == \"field 'amount': expected number\", e)")

LUA_CASE(integer_rejects_fraction,
  "local d, e = T.run({ n = 'integer' }, '{\"n\":1.5}')\n"
  "assert(e == \"field 'n': expected integer\", e)\n"
  "d = assert(T.run({ n = 'integer' }, '{\"n\":7}'))\n"
  "assert(math.type(d.n) == 'integer' and d.n == 7)")

LUA_CASE(optional_and_nested,
  "local d = assert(T.run({ ['customer.email'] = 'string?', id = 'string' },"
  " '{\"id\":\"A\",\"customer\":{\"email\":\"a@b\"}}'))\n"
  "assert(d.customer.email == 'a@b' and d.id == 'A')\n"
  "d = assert(T.run({ ['customer.email'] = 'string?' }, '{}'))\n"
  "assert(next(d) == nil)")

LUA_CASE(null_counts_as_missing,
  "local d, e = T.run({ a = 'string' }, '{\"a\":null}')\n"
  "assert(e == \"field 'a': missing (expected string)\", e)")

LUA_CASE(boolean_object_array_any,
  "local d = assert(T.run({ b = 'boolean', o = 'object', a = 'array', x = 'any' },"
  " '{\"b\":false,\"o\":{\"k\":1},\"a\":[1,2],\"x\":3}'))\n"
  "assert(d.b == false and d.o.k == 1 and #d.a == 2 and d.x == 3)\n"
  "local _, e = T.run({ o = 'object' }, '{\"o\":[1]}')\n"
  "assert(e == \"field 'o': expected object\", e)\n"
  "_, e = T.run({ a = 'array' }, '{\"a\":{\"k\":1}}')\n"
  "assert(e == \"field 'a': expected array\", e)")

LUA_CASE(integer_is_finite_and_exact,
  "local d, e = T.run({ n = 'integer' }, '{\"n\":1e999}')\n"
  "assert(e == 'malformed JSON body: number out of range: 1e999 at byte 6', e)\n"
  "_, e = T.run({ n = 'integer' }, '{\"n\":1e300}')\n"
  "assert(e == \"field 'n': expected integer\", e)\n"
  "_, e = T.run({ n = 'integer' }, '{\"n\":\"5\"}')\n"
  "assert(e == \"field 'n': expected integer\", e)\n"
  "d = assert(T.run({ n = 'integer' }, '{\"n\":1.0}'))\n"
  "assert(math.type(d.n) == 'integer' and d.n == 1)\n"
  "d = assert(T.run({ n = 'integer' }, '{\"n\":9007199254740993}'))\n"
  "assert(d.n == 9007199254740993)")

LUA_CASE(empty_array_is_not_an_object,
  "local d = assert(T.run({ a = 'array', o = 'object' }, '{\"a\":[],\"o\":{}}'))\n"
  "assert(require('hookwork.json').is_array(d.a) and next(d.o) == nil)\n"
  "local _, e = T.run({ a = 'array' }, '{\"a\":{}}')\n"
  "assert(e == \"field 'a': expected array\", e)\n"
  "_, e = T.run({ o = 'object' }, '{\"o\":[]}')\n"
  "assert(e == \"field 'o': expected object\", e)")

LUA_CASE(form_values_converted,
  "local ct = 'application/x-www-form-urlencoded'\n"
  "local d = assert(T.run({ n = 'number', i = 'integer', b = 'boolean', s = 'string' },"
  " 'n=1.5&i=42&b=true&s=a+b%21', ct))\n"
  "assert(d.n == 1.5 and d.i == 42 and d.b == true and d.s == 'a b!')\n"
  "local _, e = T.run({ i = 'integer' }, 'i=4.2', ct)\n"
  "assert(e == \"field 'i': expected integer\", e)\n"
  "_, e = T.run({ b = 'boolean' }, 'b=yes', ct)\n"
  "assert(e == \"field 'b': expected boolean\", e)")

LUA_CASE(json_labelled_as_form_is_json,
  "local d = assert(T.run({ n = 'number' }, '{\"n\":2}',"
  " 'application/x-www-form-urlencoded'))\n"
  "assert(d.n == 2)")

LUA_CASE(malformed_json_and_non_objects,
  "local _, e = T.run({ a = 'any' }, '{\"a\":')\n"
  "assert(e:find('^malformed JSON body'), e)\n"
  "local st\n"
  "_, e, st = T.run({ a = 'any' }, '[1,2]')\n"
  "assert(e == 'expected a JSON object' and st == 400, e)\n"
  "_, e, st = T.run({ a = 'any' }, '42')\n"
  "assert(e == 'expected a JSON object' and st == 400, e)\n"
  "_, e, st = T.run({ a = 'any' }, 'hello', 'text/plain')\n"
  "assert(e == 'unsupported content type text/plain' and st == 415, e)\n"
  "_, e, st = T.run({ a = 'any' }, '<a/>', 'application/xml; charset=utf-8')\n"
  "assert(e == 'unsupported content type application/xml' and st == 415, e)")

LUA_CASE(any_json_without_fields,
  "local d = assert(T.run(nil, '[1,2]'))\n"
  "assert(d.body[1] == 1 and d.body[2] == 2)\n"
  "d = assert(T.run(nil, '\"text\"'))\n"
  "assert(d.body == 'text')\n"
  "d = assert(T.run(nil, 'false'))\n"
  "assert(d.body == false)\n"
  "d = assert(T.run(nil, '\\239\\187\\191{\"a\":1}'))\n"
  "assert(d.a == 1)\n"
  "d = assert(T.run(nil, '<a>1</a>', 'application/xml'))\n"
  "assert(next(d) == nil)")

LUA_CASE(form_repeated_and_nested_keys,
  "local ct = 'application/x-www-form-urlencoded'\n"
  "local d = assert(T.run(nil, 'tag=a&tag=b&tag=c&a%5Bb%5D=1&x.y.z=2&l[]=p&l[]=q&one=1', ct))\n"
  "assert(#d.tag == 3 and d.tag[1] == 'a' and d.tag[3] == 'c')\n"
  "assert(d.a.b == '1' and d.x.y.z == '2' and d.one == '1')\n"
  "assert(#d.l == 2 and d.l[2] == 'q')\n"
  "local _, e = T.run(nil, 'a=1&a[b]=2', ct)\n"
  "assert(e == \"form field 'a[b]': mixes a value and nested fields\", e)\n"
  "d = assert(T.run({ ['a.b'] = 'integer', tag = 'array' }, 'a[b]=7&tag=x&tag=y', ct))\n"
  "assert(d.a.b == 7 and d.tag[2] == 'y')")

LUA_CASE(hostile_form_keys_are_linear_and_bounded,
  "local ct = 'application/x-www-form-urlencoded'\n"
  "local _, e = T.run(nil, string.rep('[x]', 300000) .. '=1', ct)\n"
  "local d = assert(T.run(nil, string.rep('[x]', 300000) .. '=1', ct))\n"
  "assert(d[string.rep('[x]', 300000)] == '1')\n"
  "_, e = T.run(nil, 'a' .. string.rep('[x]', 300000) .. '=1', ct)\n"
  "assert(e and e:find('nested deeper than 32 levels', 1, true), e)\n"
  "_, e = T.run(nil, 'a' .. string.rep('.x', 300000) .. '=1', ct)\n"
  "assert(e and e:find('nested deeper than 32 levels', 1, true), e)\n"
  "d = assert(T.run(nil, 'a' .. string.rep('[x]', 31) .. '=1', ct))\n"
  "for i = 1, 31 do d = d[i == 1 and 'a' or 'x'] end\n"
  "d = assert(T.run(nil, string.rep('k=v&', 100000), ct))\n"
  "assert(#d.k == 100000)")

LUA_CASE(multipart_text_and_files,
  "local ct = 'multipart/form-data; boundary=XyZ'\n"
  "local body = 'preamble\\r\\n--XyZ\\r\\nContent-Disposition: form-data; name=\"title\"\\r\\n\\r\\nHello\\r\\n'"
  " .. '--XyZ\\r\\nContent-Disposition: form-data; name=\"n\"\\r\\n\\r\\n5\\r\\n'"
  " .. '--XyZ\\r\\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.bin\"\\r\\n'"
  " .. 'Content-Type: application/octet-stream\\r\\n\\r\\n\\0\\1\\2\\r\\n--XyZ--\\r\\n'\n"
  "local d = assert(T.run({ title = 'string', n = 'integer', doc = 'object' }, body, ct))\n"
  "assert(d.title == 'Hello' and d.n == 5, d.title)\n"
  "assert(d.doc.filename == 'a.bin' and d.doc.size == 3 and d.doc.base64 == 'AAEC', d.doc.base64)\n"
  "assert(d.doc.content_type == 'application/octet-stream')\n"
  "local _, e = T.run(nil, '--XyZ\\r\\nContent-Disposition: form-data; name=\"a\"\\r\\n\\r\\nx', ct)\n"
  "assert(e == 'malformed multipart body: missing closing boundary', e)\n"
  "_, e = T.run(nil, 'x', 'multipart/form-data')\n"
  "assert(e == 'malformed multipart body: no boundary in Content-Type', e)")

LUA_CASE(without_fields_copies_top_level,
  "local obj = T.F.parse_body(T.req('{\"a\":1,\"b\":{\"c\":2},\"n\":null}'))\n"
  "local d = T.F.extract(nil, obj, false)\n"
  "assert(d.a == 1 and d.b.c == 2 and d.n == nil)")

LUA_CASE(bad_specs_rejected,
  "local s, e = T.F.compile({ a = 'strin' })\n"
  "assert(s == nil and e:find(\"^field 'a': unknown type 'strin' %(did you mean 'string'%?%)\"), e)\n"
  "s, e = T.F.compile({ a = 5 })\n"
  "assert(s == nil and e:find('must be a string'), e)")

LUA_CASE(empty_body_is_empty_object,
  "local d, e = T.run({ a = 'string?' }, '')\n"
  "assert(d and next(d) == nil, e)")

RUN_TESTS("fields", T(missing_field_named), T(mistyped_field_named),
          T(integer_rejects_fraction), T(optional_and_nested),
          T(null_counts_as_missing), T(boolean_object_array_any),
          T(integer_is_finite_and_exact), T(empty_array_is_not_an_object),
          T(form_values_converted), T(json_labelled_as_form_is_json),
          T(malformed_json_and_non_objects), T(any_json_without_fields),
          T(form_repeated_and_nested_keys), T(hostile_form_keys_are_linear_and_bounded), T(multipart_text_and_files),
          T(without_fields_copies_top_level), T(bad_specs_rejected),
          T(empty_body_is_empty_object))
