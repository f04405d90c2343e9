/* Unit tests for the door's reads in jscan.c (escaped keys, strings,
 * array elements, doubles) and dedupe.c: keys from
 * headers, JSON body fields and delivery ids (numbers printed as the Lua
 * side prints them, long keys digested), and the overlay against a real
 * store: a key is found before its commit, dropped once committed (then
 * found in the store), forgotten when its request failed, and a recorded
 * answer is kept until its own write commits. */
#include "unit.h"
#include "dedupe.h"
#include "jscan.h"

#include <errno.h>
#include <stdlib.h>
#include <uv.h>

TEST(jscan_door_reads) {
  const char *s = "{\"a\":{\"b\\u0063\":[1,2,{\"x\":1}],\"n\":-12},"
                  "\"a\":{\"c\":\"last\"},\"s\":\"q\\\"\\n\\u00e9\\ud800\"}";
  hw_jslice_t t, m, e;
  const char *pos;
  char buf[64];
  size_t n;
  ASSERT_EQ(hw_jscan_check(s, strlen(s), &t), 0);
  ASSERT_EQ(hw_jscan_find(t, "a", 1, &m), 1); /* the last "a" */
  ASSERT_EQ(hw_jscan_find(m, "c", 1, &e), 1);
  ASSERT_TRUE(hw_jscan_equal(e, "last", 4));
  ASSERT_TRUE(!hw_jscan_equal(e, "las", 3));
  ASSERT_EQ(hw_jscan_find(m, "bc", 2, &e), 0);
  ASSERT_EQ(hw_jscan_find(t, "s", 1, &m), 1);
  ASSERT_EQ(hw_jscan_string(m, buf, sizeof buf, &n), 0);
  ASSERT_EQ(n, 8); /* q " LF, U+00E9 (2), a lone surrogate as U+FFFD (3) */
  ASSERT_TRUE(memcmp(buf, "q\"\n\xc3\xa9\xef\xbf\xbd", 8) == 0);
  ASSERT_EQ(hw_jscan_string(m, buf, 3, &n), -E2BIG);
  ASSERT_EQ(n, 8);
  /* an escaped key is found (hw_jscan_member gives up on it) */
  s = "{\"\\u0065xp\":5,\"\\ud83d\\ude00\":\"smile\"}";
  ASSERT_EQ(hw_jscan_check(s, strlen(s), &t), 0);
  ASSERT_EQ(hw_jscan_member(t, "exp", 3, &e), -1);
  ASSERT_EQ(hw_jscan_find(t, "exp", 3, &e), 1);
  ASSERT_TRUE(hw_jscan_double(e) == 5);
  ASSERT_EQ(hw_jscan_find(t, "\xf0\x9f\x98\x80", 4, &e), 1);
  ASSERT_TRUE(hw_jscan_equal(e, "smile", 5));
  /* array elements, and numbers as doubles */
  s = "[ 1.5 , \"x\" ,[2], -0 ]";
  ASSERT_EQ(hw_jscan_check(s, strlen(s), &t), 0);
  pos = t.p;
  ASSERT_EQ(hw_jscan_elem(&pos, t.p + t.n, &e), 1);
  ASSERT_TRUE(hw_jscan_double(e) == 1.5);
  ASSERT_EQ(hw_jscan_elem(&pos, t.p + t.n, &e), 1);
  ASSERT_TRUE(hw_jscan_equal(e, "x", 1));
  ASSERT_EQ(hw_jscan_elem(&pos, t.p + t.n, &e), 1);
  ASSERT_EQ(e.n, 3);
  ASSERT_EQ(hw_jscan_elem(&pos, t.p + t.n, &e), 1);
  ASSERT_EQ(hw_jscan_elem(&pos, t.p + t.n, &e), 0);
  s = "[]";
  ASSERT_EQ(hw_jscan_check(s, 2, &t), 0);
  pos = t.p;
  ASSERT_EQ(hw_jscan_elem(&pos, t.p + t.n, &e), 0);
  ASSERT_EQ(hw_jscan_find(t, "a", 1, &e), 0); /* not an object */
}

/* --- keys ---------------------------------------------------------------- */

static const char *HNAME[4], *HVAL[4];

static const char *get_header(void *ctx, const char *name, size_t *len) {
  (void) ctx;
  for (int i = 0; i < 4 && HNAME[i]; i++)
    if (strcmp(HNAME[i], name) == 0) {
      *len = strlen(HVAL[i]);
      return HVAL[i];
    }
  return NULL;
}

static hw_req_view_t V = {"POST", "", 0, get_header, NULL};
static char KEY[HW_DEDUPE_KEY_BUF];
static size_t KLEN;

static int field_key(const char *path, const char *json) {
  hw_dedupe_spec_t *sp;
  int rc;
  if (hw_dedupe_spec_new(HW_DK_FIELD, path, NULL, 0, &sp) != 0)
    return -100;
  KEY[0] = '\0';
  rc = hw_dedupe_key(sp, &V, json, json ? strlen(json) : 0, KEY, &KLEN);
  hw_dedupe_spec_free(sp);
  return rc;
}

TEST(keys_from_fields_print_like_lua) {
  ASSERT_EQ(field_key("event.id", "{\"event\":{\"id\":\"evt_1\"}}"), 1);
  ASSERT_STREQ(KEY, "evt_1");
  ASSERT_EQ(field_key("id", "\xEF\xBB\xBF{\"id\":7}"), 1); /* BOM */
  ASSERT_STREQ(KEY, "7");
  ASSERT_EQ(field_key("id", "{\"id\":7.0}"), 1); /* integral float */
  ASSERT_STREQ(KEY, "7");
  ASSERT_EQ(field_key("id", "{\"id\":-0}"), 1);
  ASSERT_STREQ(KEY, "0");
  ASSERT_EQ(field_key("id", "{\"id\":1.25}"), 1);
  ASSERT_STREQ(KEY, "1.25");
  ASSERT_EQ(field_key("id", "{\"id\":1e300}"), 1);
  ASSERT_STREQ(KEY, "1e+300");
  ASSERT_EQ(field_key("id", "{\"id\":12345678901234.56}"), 1);
  ASSERT_STREQ(KEY, "12345678901235.0"); /* %.14g looks integral: ".0" */
  ASSERT_EQ(field_key("id", "{\"id\":true}"), 1);
  ASSERT_STREQ(KEY, "true");
  ASSERT_EQ(field_key("id", "{\"id\":null}"), 0);
  ASSERT_EQ(field_key("id", "{\"id\":{}}"), 0);
  ASSERT_EQ(field_key("id", "{\"id\":[1]}"), 0);
  ASSERT_EQ(field_key("id", "{\"id\":\"\"}"), 0);
  ASSERT_EQ(field_key("a.b", "{\"a\":[{\"b\":1}]}"), 0);
  ASSERT_EQ(field_key("0", "[\"x\"]"), 0); /* arrays have no named fields */
  ASSERT_EQ(field_key("id", "{\"id\":"), 0); /* not JSON: no key */
  ASSERT_EQ(field_key("id", NULL), -ENOTSUP); /* a form: the caller's */
  ASSERT_EQ(field_key("..", NULL), -100);     /* no path at all */
}

TEST(keys_from_headers_deliveries_and_long_values) {
  hw_dedupe_spec_t *sp;
  hw_verify_spec_t vs;
  hw_verify_scheme_t *s;
  hw_verify_t *v;
  char err[128], longv[300];
  memset(HNAME, 0, sizeof HNAME);
  ASSERT_EQ(hw_dedupe_spec_new(HW_DK_HEADER, "X-Delivery", NULL, 60, &sp), 0);
  ASSERT_TRUE(hw_dedupe_spec_window(sp) == 60);
  ASSERT_EQ(hw_dedupe_key(sp, &V, NULL, 0, KEY, &KLEN), 0);
  HNAME[0] = "x-delivery";
  HVAL[0] = "d-1";
  ASSERT_EQ(hw_dedupe_key(sp, &V, NULL, 0, KEY, &KLEN), 1);
  ASSERT_STREQ(KEY, "d-1");
  memset(longv, 'k', 299);
  longv[299] = '\0';
  HVAL[0] = longv;
  ASSERT_EQ(hw_dedupe_key(sp, &V, NULL, 0, KEY, &KLEN), 1);
  ASSERT_EQ(KLEN, 7 + 64);
  ASSERT_TRUE(strncmp(KEY, "sha256:", 7) == 0);
  HVAL[0] = "";
  ASSERT_EQ(hw_dedupe_key(sp, &V, NULL, 0, KEY, &KLEN), 0);
  hw_dedupe_spec_free(sp);
  /* standard_webhooks: webhook-id, else svix-id */
  memset(&vs, 0, sizeof vs);
  vs.scheme = HW_VS_STANDARD_WEBHOOKS;
  vs.secret[0] = "whsec_AAAA";
  vs.secret_len[0] = 10;
  vs.nsecret = 1;
  ASSERT_EQ(hw_verify_scheme_new(&vs, &s, err, sizeof err), 0);
  ASSERT_EQ(hw_verify_new(&s, 1, &v), 0);
  ASSERT_EQ(hw_dedupe_spec_new(HW_DK_DELIVERY, NULL, v, 0, &sp), 0);
  ASSERT_TRUE(hw_dedupe_spec_window(sp) == HW_DEDUPE_WINDOW);
  HNAME[0] = "svix-id";
  HVAL[0] = "msg_svix";
  ASSERT_EQ(hw_dedupe_key(sp, &V, NULL, 0, KEY, &KLEN), 1);
  ASSERT_STREQ(KEY, "msg_svix");
  HNAME[1] = "webhook-id";
  HVAL[1] = "msg_std";
  ASSERT_EQ(hw_dedupe_key(sp, &V, NULL, 0, KEY, &KLEN), 1);
  ASSERT_STREQ(KEY, "msg_std");
  hw_dedupe_spec_free(sp);
  hw_verify_release(v);
  /* no scheme with a delivery id */
  ASSERT_EQ(hw_dedupe_spec_new(HW_DK_DELIVERY, NULL, NULL, 0, &sp), -EINVAL);
  memset(HNAME, 0, sizeof HNAME);
}

/* --- the overlay against a store ----------------------------------------- */

static char dir[64];
static int flushed;
static void on_flush(int status, const char *reason, void *arg) {
  (void) status;
  (void) reason;
  (void) arg;
  flushed++;
}

static void commit_all(uv_loop_t *loop, hw_store_t *st) {
  int want = flushed + 1;
  hw_store_flush(st, on_flush, NULL);
  hw_store_kick(st);
  while (flushed < want)
    uv_run(loop, UV_RUN_ONCE);
}

TEST(overlay_until_commit_then_store) {
  uv_loop_t loop;
  hw_store_t *st;
  hw_dedupe_t *d;
  hw_dedupe_hit_t hit;
  char err[256], cmd[128];
  uint64_t seq;
  strcpy(dir, "/tmp/hw-dedupe-XXXXXX");
  ASSERT_TRUE(mkdtemp(dir) != NULL);
  uv_loop_init(&loop);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  ASSERT_EQ(hw_dedupe_new(&d), 0);
  ASSERT_EQ(hw_dedupe_find(d, st, "c", "in", "k1", 2, 100, &hit), 0);
  ASSERT_EQ(hw_dedupe_note(d, st, "c", "in", "k1", 2, 7, 60, 100, &seq), 0);
  ASSERT_TRUE(seq > 0);
  /* not committed: the overlay has it, with its write to wait for */
  ASSERT_EQ(hw_dedupe_overlay_size(d), 1);
  ASSERT_EQ(hw_dedupe_find(d, st, "c", "in", "k1", 2, 100, &hit), 1);
  ASSERT_EQ(hit.tx, 7);
  ASSERT_TRUE(hit.seq == seq);
  ASSERT_EQ(hit.status, 0);
  /* another step or cycle is another key */
  ASSERT_EQ(hw_dedupe_find(d, st, "c", "other", "k1", 2, 100, &hit), 0);
  ASSERT_EQ(hw_dedupe_find(d, st, "c2", "in", "k1", 2, 100, &hit), 0);
  /* past its window it is not a duplicate */
  ASSERT_EQ(hw_dedupe_find(d, st, "c", "in", "k1", 2, 161, &hit), 0);
  commit_all(&loop, st);
  /* committed: dropped from the overlay, found in the store */
  ASSERT_EQ(hw_dedupe_find(d, st, "c", "in", "k1", 2, 100, &hit), 1);
  ASSERT_EQ(hw_dedupe_overlay_size(d), 0);
  ASSERT_EQ(hit.tx, 7);
  ASSERT_TRUE(hit.seq == 0);
  ASSERT_EQ(hw_dedupe_find(d, st, "c", "in", "k1", 2, 161, &hit), 0);
  /* a failed request's key is forgotten (only its own tx's) */
  ASSERT_EQ(hw_dedupe_note(d, st, "c", "in", "k2", 2, 8, 60, 100, &seq), 0);
  hw_dedupe_forget(d, "c", "in", "k2", 2, 99);
  ASSERT_EQ(hw_dedupe_overlay_size(d), 1);
  hw_dedupe_forget(d, "c", "in", "k2", 2, 8);
  ASSERT_EQ(hw_dedupe_overlay_size(d), 0);
  /* a recorded answer is served from memory until its write commits */
  ASSERT_EQ(hw_dedupe_record(d, st, "c", "in", "k1", 2, 7, 201, "text/plain",
                             "[\"X-A: 1\"]", "made", 4), 0);
  ASSERT_EQ(hw_dedupe_find(d, st, "c", "in", "k1", 2, 100, &hit), 1);
  ASSERT_EQ(hit.status, 201);
  ASSERT_STREQ(hit.ctype, "text/plain");
  ASSERT_STREQ(hit.headers, "[\"X-A: 1\"]");
  ASSERT_EQ(hit.body_len, 4);
  commit_all(&loop, st);
  hw_dedupe_tick(d, st, 100, 1);
  ASSERT_EQ(hw_dedupe_overlay_size(d), 0);
  /* the expired key is purged from the store by the tick */
  hw_dedupe_tick(d, st, 200, 1);
  commit_all(&loop, st);
  ASSERT_EQ(hw_dedupe_find(d, st, "c", "in", "k1", 2, -1e9, &hit), 0);
  hw_dedupe_free(d);
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ(system(cmd), 0);
}

RUN_TESTS("dedupe", T(jscan_door_reads),
          T(keys_from_fields_print_like_lua),
          T(keys_from_headers_deliveries_and_long_values),
          T(overlay_until_commit_then_store))
