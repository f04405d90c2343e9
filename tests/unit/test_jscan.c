/* Unit tests for core/jscan.c: the checker agrees with the decoder on what
 * is JSON, members are found as the decoder keeps them (the last of a
 * repeated key; an escaped key makes the answer "cannot tell"), and the
 * integer rule is math.tointeger's. */
#include "jscan.h"
#include "unit.h"

#include <stdint.h>

static int check(const char *s) { return hw_jscan_check(s, strlen(s), NULL); }

TEST(check_accepts_json) {
  ASSERT_EQ(check("{}"), 0);
  ASSERT_EQ(check(" \t\r\n{\"a\":[1,-2.5e3,true,false,null,\"x\"]} \n"), 0);
  ASSERT_EQ(check("{\"a\":{\"b\":{\"c\":\"\\u00e9\\ud83d\\ude00\\ud800\"}}}"), 0);
  ASSERT_EQ(check("\"\xc3\xa9\xf0\x9f\x98\x80\""), 0);
  ASSERT_EQ(check("-0"), 0);
  ASSERT_EQ(check("12345678901234567890123"), 0); /* a double */
  ASSERT_EQ(check("{\"a\":1,\"a\":2}"), 0);        /* repeated: the last wins */
}

TEST(check_refuses_what_the_decoder_refuses) {
  const char *bad[] = {"", "  ", "{", "}", "{\"a\":1,}", "{\"a\" 1}", "{a:1}",
                       "[1,]", "01", "1.", ".5", "1e", "+1", "-", "1e999",
                       "-1e999", "tru", "truex", "nul", "\"\\x\"", "\"\\u12\"",
                       "\"a\x01\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
                       "\"\xf4\x90\x80\x80\"", "\"abc", "{}{}", "{} x",
                       "\xef\xbb\xbf{}", "1x", "[1 2]"};
  size_t i;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (check(bad[i]) == 0) {
      fprintf(stderr, "  passed: %s\n", bad[i]);
      ASSERT_TRUE(0);
    }
}

TEST(check_depth_limit_is_the_decoders) {
  char s[1000];
  int i;
  for (i = 0; i < 200; i++)
    s[i] = '[';
  for (i = 0; i < 200; i++)
    s[200 + i] = ']';
  ASSERT_EQ(hw_jscan_check(s, 400, NULL), 0);
  for (i = 0; i < 201; i++)
    s[i] = '[';
  for (i = 0; i < 201; i++)
    s[201 + i] = ']';
  ASSERT_EQ(hw_jscan_check(s, 402, NULL), -1);
}

static int member(const char *obj, const char *key, char *out) {
  hw_jslice_t root, v;
  int rc;
  if (hw_jscan_check(obj, strlen(obj), &root) != 0)
    return -9;
  rc = hw_jscan_member(root, key, strlen(key), &v);
  if (rc == 1) {
    memcpy(out, v.p, v.n);
    out[v.n] = '\0';
  }
  return rc;
}

TEST(member_finds_the_last_and_raw_slices) {
  char v[256];
  ASSERT_EQ(member("{\"a\":1,\"b\" : { \"c\" : [1, \"]\"] } ,\"a\":\"x\\\"y\"}", "b", v), 1);
  ASSERT_STREQ(v, "{ \"c\" : [1, \"]\"] }");
  ASSERT_EQ(member("{\"a\":1,\"b\":2,\"a\":\"x\\\"y\"}", "a", v), 1);
  ASSERT_STREQ(v, "\"x\\\"y\"");
  ASSERT_EQ(member("{\"a\":1}", "b", v), 0);
  ASSERT_EQ(member("{\"ab\":1}", "a", v), 0);
  ASSERT_EQ(member("{}", "a", v), 0);
  ASSERT_EQ(member("{\"\\u0061\":1}", "a", v), -1); /* cannot tell */
  ASSERT_EQ(member("{\"a\":-1.5e3}", "a", v), 1);
  ASSERT_STREQ(v, "-1.5e3");
}

TEST(next_walks_every_member) {
  const char *s = "{ \"a\" : 1 , \"b\":[{}], \"c\":null }";
  hw_jslice_t root, k, v;
  const char *pos;
  int n = 0;
  ASSERT_EQ(hw_jscan_check(s, strlen(s), &root), 0);
  pos = root.p;
  while (hw_jscan_next(&pos, root.p + root.n, &k, &v))
    n++;
  ASSERT_EQ(n, 3);
  ASSERT_EQ(k.n, 1);
  ASSERT_TRUE(k.p[0] == 'c' && v.n == 4);
}

static int integer(const char *s, int64_t *out, int *lit) {
  hw_jslice_t num = {s, strlen(s)};
  return hw_jscan_integer(num, out, lit);
}

TEST(integer_is_math_tointegers) {
  int64_t i;
  int lit;
  ASSERT_EQ(integer("42", &i, &lit), 1);
  ASSERT_TRUE(i == 42 && lit);
  ASSERT_EQ(integer("1e3", &i, &lit), 1);
  ASSERT_TRUE(i == 1000 && !lit);
  ASSERT_EQ(integer("7.0", &i, &lit), 1);
  ASSERT_TRUE(i == 7 && !lit);
  ASSERT_EQ(integer("-0", &i, &lit), 1); /* a float -0.0: integer 0 */
  ASSERT_TRUE(i == 0 && !lit);
  ASSERT_EQ(integer("9223372036854775807", &i, &lit), 1);
  ASSERT_TRUE(i == INT64_MAX && lit);
  ASSERT_EQ(integer("-9223372036854775808", &i, &lit), 1);
  ASSERT_TRUE(i == INT64_MIN && lit);
  ASSERT_EQ(integer("9223372036854775808", &i, &lit), 0); /* 2^63 as a double */
  ASSERT_EQ(integer("12345678901234567890", &i, &lit), 0);
  ASSERT_EQ(integer("1.5", &i, &lit), 0);
  ASSERT_EQ(integer("1e-2", &i, &lit), 0);
  ASSERT_EQ(integer("9007199254740993", &i, &lit), 1);
  ASSERT_TRUE(i == 9007199254740993LL && lit);
}

RUN_TESTS("jscan", T(check_accepts_json), T(check_refuses_what_the_decoder_refuses),
          T(check_depth_limit_is_the_decoders), T(member_finds_the_last_and_raw_slices),
          T(next_walks_every_member), T(integer_is_math_tointegers))
