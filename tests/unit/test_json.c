/* Unit tests for core/json.c: JSONTestSuite-style accept (y_) and refuse
 * (n_) cases, exact number round trips, [] kept apart from {}, UTF-8
 * rules, encode errors that name the path, and the cost of a large body. */
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>
#include <time.h>

#include "json.h"

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  hw_json_open(L);
  lua_setglobal(L, "json");
  return L;
}

/* Decodes text (strict) and re-encodes it; returns the output or the
 * decode error, in buf. */
static int roundtrip(const char *text, size_t n, char *buf, size_t cap) {
  lua_State *L = new_state();
  char err[256];
  int rc = hw_json_decode(L, text, n, 0, err, sizeof err);
  if (rc == 0) {
    rc = hw_json_encode(L, -1, "value", err, sizeof err);
    if (rc == 0) {
      snprintf(buf, cap, "%s", lua_tostring(L, -1));
      lua_pop(L, 1);
    } else {
      snprintf(buf, cap, "encode: %.200s", err);
    }
    lua_pop(L, 1);
  } else {
    snprintf(buf, cap, "%s", err);
  }
  if (lua_gettop(L) != 0)
    rc = -2; /* the stack must come back balanced */
  lua_close(L);
  return rc;
}

/* Accepted: input, its re-encoding. */
static const char *const yes[][2] = {
    {"[]", "[]"},
    {"{}", "{}"},
    {"[[],{}]", "[[],{}]"},
    {"{\"a\":[]}", "{\"a\":[]}"},
    {" \t\n\r[1] \n", "[1]"},
    {"0", "0"},
    {"-0", "-0.0"},
    {"1", "1"},
    {"-1", "-1"},
    {"1.5", "1.5"},
    {"1.0", "1.0"},
    {"1e2", "100.0"},
    {"1E+2", "100.0"},
    {"1e-2", "0.01"},
    {"1e20", "1e+20"},
    {"0.1", "0.1"},
    {"1e-300", "1e-300"},
    {"5e-324", "4.94065645841247e-324"},
    {"1e-400", "0.0"},
    {"9007199254740993", "9007199254740993"},
    {"123456789012345", "123456789012345"},
    {"9223372036854775807", "9223372036854775807"},
    {"-9223372036854775808", "-9223372036854775808"},
    {"9223372036854775808", "9.223372036854776e+18"},
    {"0.30000000000000004", "0.30000000000000004"},
    {"1.7976931348623157e308", "1.7976931348623157e+308"},
    {"\"x\"", "\"x\""},
    {"true", "true"},
    {"false", "false"},
    {"null", "null"},
    {"[null,1]", "[null,1]"},
    {"\"\\u00e9\"", "\"\xc3\xa9\""},
    {"\"\xc3\xa9\"", "\"\xc3\xa9\""},
    {"\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\""},
    {"\"\\ud800\"", "\"\xef\xbf\xbd\""},      /* lone high surrogate */
    {"\"\\udc00x\"", "\"\xef\xbf\xbdx\""},    /* lone low surrogate */
    {"\"\\ud800\\u0041\"", "\"\xef\xbf\xbd" "A\""},
    {"\"a\\/b\"", "\"a/b\""},
    {"\"\\\"\\\\\\b\\f\\n\\r\\t\"", "\"\\\"\\\\\\b\\f\\n\\r\\t\""},
    {"\"\\u001f\\u007f\"", "\"\\u001f\x7f\""},
    {"{\"a\":1,\"a\":2}", "{\"a\":2}"},
    {"[1,[2,[3]]]", "[1,[2,[3]]]"},
    {"\"\xf4\x8f\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\""}, /* U+10FFFF */
};

/* Refused: input, the start of the message. */
static const char *const no[][2] = {
    {"0x10", "invalid number '0x10' at byte 1"},
    {"NaN", "invalid value 'NaN' at byte 1"},
    {"Infinity", "invalid value 'Infinity' at byte 1"},
    {"-Infinity", "invalid number '-Infinity' at byte 1"},
    {"[-NaN]", "invalid number '-NaN' at byte 2"},
    {"1e999", "number out of range: 1e999 at byte 1"},
    {"{\"times\":1e999}", "number out of range: 1e999 at byte 10"},
    {"-1e999", "number out of range: -1e999"},
    {"01", "leading zeros are not allowed in a number at byte 1"},
    {"-01", "leading zeros"},
    {"[1,]", "trailing comma at byte 4"},
    {"{\"a\":1,}", "trailing comma at byte 8"},
    {"[1,,2]", "unexpected character ','"},
    {"[1 2]", "expected ',' or ']' in an array at byte 4"},
    {"{\"a\" 1}", "expected ':' after a key"},
    {"{a:1}", "expected a string key in an object at byte 2"},
    {"'a'", "unexpected character '''"},
    {"\"\\x\"", "invalid escape '\\x'"},
    {"\"\\u12\"", "invalid \\u escape"},
    {"\"a\x1f" "b\"", "control character 0x1F in a string at byte 3"},
    {"\"a\nb\"", "control character 0x0A"},
    {"\"\xff\"", "invalid UTF-8 in a string at byte 2"},
    {"\"\xed\xa0\x80\"", "invalid UTF-8"},  /* a surrogate as UTF-8 */
    {"\"\xc0\xaf\"", "invalid UTF-8"},      /* overlong "/" */
    {"\"\xf4\x90\x80\x80\"", "invalid UTF-8"}, /* past U+10FFFF */
    {"\"\xe2\x82\"", "invalid UTF-8"},      /* cut short */
    {"", "unexpected end of input"},
    {"   ", "unexpected end of input"},
    {"[", "unexpected end of input"},
    {"]", "unexpected character ']'"},
    {"[1]x", "unexpected data after the JSON value at byte 4"},
    {"{}{}", "unexpected data after the JSON value"},
    {".5", "invalid value '.5'"},
    {"1.", "invalid number '1.'"},
    {"1.e5", "invalid number '1.e5'"},
    {"1e", "invalid number '1e'"},
    {"+1", "invalid value '+1'"},
    {"-", "invalid number '-'"},
    {"tru", "invalid value 'tru'"},
    {"truex", "invalid value 'truex'"},
    {"nul", "invalid value 'nul'"},
    {"\"abc", "unterminated string"},
    {"\xef\xbb\xbf{}", "unexpected byte 0xEF"}, /* the HTTP path skips BOMs */
    {"{\"a\":1", "unexpected end of input in an object"},
    {"[\"a\\", "unterminated string"},
};

TEST(accepts_rfc8259) {
  size_t i;
  char out[256];
  for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    int rc = roundtrip(yes[i][0], strlen(yes[i][0]), out, sizeof out);
    if (rc != 0)
      fprintf(stderr, "  y_ case %zu: %s\n", i, out);
    ASSERT_EQ(rc, 0);
    ASSERT_STREQ(out, yes[i][1]);
  }
}

TEST(refuses_what_is_not_json) {
  size_t i;
  char out[256];
  for (i = 0; i < sizeof no / sizeof no[0]; i++) {
    int rc = roundtrip(no[i][0], strlen(no[i][0]), out, sizeof out);
    if (rc != -1 || strncmp(out, no[i][1], strlen(no[i][1])) != 0)
      fprintf(stderr, "  n_ case %zu (%s): %s\n", i, no[i][0], out);
    ASSERT_EQ(rc, -1);
    ASSERT_TRUE(strncmp(out, no[i][1], strlen(no[i][1])) == 0);
  }
}

TEST(nul_inside_a_string) {
  char out[64];
  ASSERT_EQ(roundtrip("\"a\\u0000b\"", 10, out, sizeof out), 0);
  ASSERT_STREQ(out, "\"a\\u0000b\"");
  /* a raw NUL byte is a control character */
  ASSERT_EQ(roundtrip("\"a\0b\"", 5, out, sizeof out), -1);
}

static int depth_case(int depth) {
  char *s = malloc((size_t) depth * 2 + 1), out[256];
  int i, rc;
  for (i = 0; i < depth; i++) {
    s[i] = '[';
    s[depth + i] = ']';
  }
  s[depth * 2] = '\0';
  rc = roundtrip(s, (size_t) depth * 2, out, sizeof out);
  free(s);
  return rc;
}

TEST(depth_limit_200) {
  ASSERT_EQ(depth_case(200), 0);
  ASSERT_EQ(depth_case(201), -1);
  ASSERT_EQ(depth_case(100000), -1); /* no stack overflow */
}

/* Lua-side behaviour: runs code with `json` set; asserts inside. */
static int lua_ok(const char *code) {
  lua_State *L = new_state();
  int ok = luaL_dostring(L, code) == LUA_OK;
  if (!ok)
    fprintf(stderr, "  %s\n", lua_tostring(L, -1));
  lua_close(L);
  return ok;
}

#define LUA_CASE(name, code) TEST(name) { ASSERT_TRUE(lua_ok(code)); }

LUA_CASE(numbers_keep_their_type,
  "local v = json.decode('[9007199254740993, 1.0, 5, -0]')\n"
  "assert(math.type(v[1]) == 'integer' and v[1] == 9007199254740993)\n"
  "assert(math.type(v[2]) == 'float' and math.type(v[3]) == 'integer')\n"
  "assert(1/v[4] == -math.huge)\n"
  "assert(json.encode(2^53 + 0.0) == '9007199254740992.0')\n"
  "assert(json.encode(math.maxinteger) == '9223372036854775807')\n"
  "assert(json.encode(math.mininteger) == '-9223372036854775808')\n"
  "for _, x in ipairs({0.1, 1/3, 1e-300, 5e-324, 2^-1074, 1.7976931348623157e308,\n"
  "                    123456.789, -2.5e-7, 100.0}) do\n"
  "  local back = json.decode(json.encode(x))\n"
  "  assert(back == x and math.type(back) == 'float', json.encode(x))\n"
  "end")

LUA_CASE(arrays_stay_arrays,
  "local v = json.decode('{\"a\":[],\"b\":{},\"c\":[[]]}')\n"
  "assert(json.is_array(v.a) and not json.is_array(v.b))\n"
  "assert(json.is_array(v.c) and json.is_array(v.c[1]))\n"
  "assert(json.encode(v.a) == '[]' and json.encode(v.b) == '{}')\n"
  "assert(json.encode(json.array()) == '[]')\n"
  "assert(json.encode(json.array({})) == '[]' and json.encode({}) == '{}')\n"
  "local t = {}; assert(json.array(t) == t and json.is_array(t))\n"
  "assert(getmetatable(v.a) == 'json.array')\n"
  "assert(not pcall(setmetatable, v.a, {}))\n"
  "assert(not pcall(json.array, setmetatable({}, {})))\n"
  "v.a[1] = 'x'; assert(json.encode(v.a) == '[\"x\"]')\n"
  "assert(json.encode({1, 2, 3}) == '[1,2,3]')\n"
  "assert(json.encode({[1] = 1, [3] = 3}) == '[1,null,3]')\n"
  "local sparse = json.decode(json.encode({[1] = 1, [1000] = 2}))\n"
  "assert(sparse['1'] == 1 and sparse['1000'] == 2)\n"
  "assert(json.encode(json.decode('[null]')) == '[null]')\n"
  "assert(json.decode('null') == json.null)")

LUA_CASE(encode_errors_name_the_path,
  "local function err(v, root)\n"
  "  local ok, e = pcall(json.encode, v, root)\n"
  "  assert(not ok); return e\n"
  "end\n"
  "assert(err({ratio = 1/0}, 'tx.data') == 'tx.data.ratio: cannot store inf')\n"
  "assert(err({ratio = -1/0}, 'tx.data') == 'tx.data.ratio: cannot store -inf')\n"
  "assert(err({x = {1, 2, 0/0}}, 'tx.data') == 'tx.data.x[3]: cannot store nan')\n"
  "assert(err({f = print}, 'tx.data') == 'tx.data.f: cannot store a function')\n"
  "assert(err({['a b'] = {f = print}}, 'tx.data') ==\n"
  "       'tx.data[\"a b\"].f: cannot store a function')\n"
  "local t = {a = {}}; t.a.back = t\n"
  "assert(err(t, 'tx.data') == 'tx.data.a.back: cannot store a table that contains itself')\n"
  "local deep = {}; local cur = deep\n"
  "for i = 1, 250 do cur.n = {}; cur = cur.n end\n"
  "assert(err(deep, 'tx.data'):find(': nesting deeper than 200$'))\n"
  "assert(err({[true] = 1}) == 'value: cannot store a key of type boolean')\n"
  "assert(err(coroutine.create(print)) == 'value: cannot store a thread')\n"
  "assert(err(io.stdout) == 'value: cannot store a userdata')\n"
  "local shared = {1}\n"
  "assert(json.encode({shared, shared}) == '[[1],[1]]')  -- not a cycle")

LUA_CASE(output_is_valid_utf8,
  "assert(json.encode('a\\255b') == '\"a\\239\\191\\189b\"')\n"
  "assert(json.encode('\\237\\160\\128') == '\"' .. ('\\239\\191\\189'):rep(3) .. '\"')\n"
  "assert(json.encode({['\\255'] = 1}) == '{\"\\239\\191\\189\":1}')\n"
  "assert(json.encode('a/b<\\226\\128\\168') == '\"a/b<\\226\\128\\168\"')\n"
  "assert(json.decode('\"\\255\"') == nil)\n"
  "assert(json.decode('\"a\\255\"', 'lax') == 'a\\239\\191\\189')\n"
  "assert(json.utf8_clean('ok\\255') == 'ok\\239\\191\\189')\n"
  "assert(json.utf8_clean('caf\\195\\169') == 'caf\\195\\169')")

/* The encoder keeps its output buffer between calls (one per Lua state):
 * no call may see another's bytes, whether the one before failed half way,
 * was larger than the buffer kept (64 KiB), or was a nested value. */
LUA_CASE(encode_buffer_reused_between_calls,
  "local big = {s = string.rep('x', 100000)}\n"
  "local bigjson = json.encode(big)\n"
  "assert(#bigjson == 100008 and json.decode(bigjson).s == big.s)\n"
  "assert(json.encode({a = 1}) == '{\"a\":1}')\n"
  "assert(json.encode(true) == 'true' and json.encode('') == '\"\"')\n"
  "-- fails after writing part of its output: the next call starts empty\n"
  "local ok, e = pcall(json.encode, json.array({string.rep('y', 5000), print}), 'v')\n"
  "assert(not ok and e == 'v[2]: cannot store a function', e)\n"
  "assert(json.encode(json.array({1})) == '[1]')\n"
  "local ok2 = pcall(json.encode, {x = string.rep('z', 200000), f = print})\n"
  "assert(not ok2 and json.encode(0) == '0')\n"
  "for i = 1, 200 do\n"
  "  local s = string.rep('k', i)\n"
  "  assert(json.encode({s}) == '[\"' .. s .. '\"]')\n"
  "end\n"
  "assert(json.encode(big) == bigjson)")

/* A 1 MiB body of 500k items must decode in tens of milliseconds. */
TEST(large_body_is_cheap) {
  size_t n = 500000, i, len = 0;
  char *s = malloc(n * 2 + 2), err[256];
  lua_State *L = new_state();
  struct timespec t0, t1;
  double ms;
  s[len++] = '[';
  for (i = 0; i < n; i++) {
    s[len++] = (char) ('0' + (int) (i % 10));
    s[len++] = ',';
  }
  s[len - 1] = ']';
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ASSERT_EQ(hw_json_decode(L, s, len, 0, err, sizeof err), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ms = (double) (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
  ASSERT_EQ(lua_rawlen(L, -1), n);
  fprintf(stderr, "  decode of %zu bytes, %zu items: %.1f ms\n", len, n, ms);
  ASSERT_TRUE(ms < 1000); /* generous: sanitizer builds, a shared machine */
  clock_gettime(CLOCK_MONOTONIC, &t0);
  ASSERT_EQ(hw_json_encode(L, -1, "value", err, sizeof err), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ms = (double) (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
  fprintf(stderr, "  encode back: %.1f ms\n", ms);
  ASSERT_TRUE(strcmp(lua_tostring(L, -1), s) == 0);
  lua_close(L);
  free(s);
}

RUN_TESTS("json",
  T(accepts_rfc8259), T(refuses_what_is_not_json), T(nul_inside_a_string),
  T(depth_limit_200), T(numbers_keep_their_type), T(arrays_stay_arrays),
  T(encode_errors_name_the_path), T(output_is_valid_utf8),
  T(encode_buffer_reused_between_calls),
  T(large_body_is_cheap))
