/* fuzz_door: the door's header parsers and in-place JSON (core/verify.c,
 * core/verify_auth.c, core/jscan.c, core/dedupe.c's keys).
 *
 * Input: "SIG\nTS\nID\nBODY": SIG is the value of every signature or
 * credential header a scheme reads (webhook-signature, stripe-signature,
 * authorization, ...), TS of every timestamp header, ID of the id
 * headers; BODY the raw body.  Every scheme checks it.  Checked: no crash;
 * a check passes or fails with a known reason code and a non-empty
 * message; in JSON the scanner accepts, the escape-aware member lookup
 * agrees with the plain one, a string member unescapes to text it equals,
 * and a field key is a key or none. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dedupe.h"
#include "jscan.h"
#include "verify.h"

static const char *F[3];
static size_t FL[3];

static const char *hdr(void *ctx, const char *name, size_t *len) {
  int i = 0;
  (void) ctx;
  if (strstr(name, "timestamp"))
    i = 1;
  else if (strcmp(name, "webhook-id") == 0 || strcmp(name, "svix-id") == 0)
    i = 2;
  *len = FL[i];
  return F[i];
}

static hw_verify_scheme_t *S[HW_VS_COUNT + 2];
static int NS;

static void add(hw_verify_spec_t *sp) {
  char err[256];
  if (hw_verify_scheme_new(sp, &S[NS], err, sizeof err) == 0)
    NS++;
}

static void init(void) {
  static const char *const hs[] = {"HS256", "HS384", "HS512"};
  hw_verify_spec_t sp;
  for (int id = 0; id < HW_VS_COUNT; id++) {
    memset(&sp, 0, sizeof sp);
    sp.scheme = id;
    sp.secret[0] = id == HW_VS_STANDARD_WEBHOOKS ? "whsec_c2VjcmV0" : "secret";
    sp.secret_len[0] = strlen(sp.secret[0]);
    sp.secret[1] = id == HW_VS_STANDARD_WEBHOOKS ? "whsec_b3RoZXI=" : "other";
    sp.secret_len[1] = strlen(sp.secret[1]);
    sp.nsecret = 2;
    sp.header = id == HW_VS_JWT ? NULL : "X-Sig";
    sp.user = "user";
    sp.prefix = "sha256=";
    sp.audience = "aud";
    sp.issuer = "iss";
    for (int i = 0; i < 3; i++)
      sp.algs[i] = hs[i];
    sp.nalgs = 3;
    add(&sp);
  }
  /* hmac base64 without prefix; jwt on another header */
  memset(&sp, 0, sizeof sp);
  sp.scheme = HW_VS_HMAC;
  sp.secret[0] = "k";
  sp.secret_len[0] = 1;
  sp.nsecret = 1;
  sp.header = "authorization";
  sp.encoding = "base64";
  add(&sp);
  sp.scheme = HW_VS_JWT;
  sp.header = "X-Token";
  add(&sp);
  assert(NS == HW_VS_COUNT + 2);
}

static int known(const char *code) {
  static const char *const codes[] = {"missing", "malformed", "timestamp",
                                      "mismatch", "algorithm", "expired",
                                      "claims", NULL};
  for (int i = 0; codes[i]; i++)
    if (strcmp(code, codes[i]) == 0)
      return 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *) data, *end = p + size, *nl;
  hw_req_view_t r = {"POST", NULL, 0, hdr, NULL};
  hw_jslice_t t, m1, m2;
  hw_dedupe_spec_t *sp;
  char key[HW_DEDUPE_KEY_BUF];
  size_t klen;
  if (NS == 0)
    init();
  for (int i = 0; i < 3; i++) {
    nl = memchr(p, '\n', (size_t) (end - p));
    F[i] = p;
    FL[i] = nl ? (size_t) (nl - p) : (size_t) (end - p);
    p = nl ? nl + 1 : end;
  }
  r.body = p;
  r.body_len = (size_t) (end - p);
  for (int i = 0; i < NS; i++) {
    const char *code = NULL;
    char msg[200];
    int rc = hw_verify_scheme_check(S[i], &r, 1700000000, &code, msg,
                                    sizeof msg);
    assert(rc == 0 || rc == HW_EVERIFY);
    if (rc != 0)
      assert(code != NULL && known(code) && msg[0] != '\0');
  }
  if (hw_jscan_check(r.body, r.body_len, &t) == 0) {
    /* the escape-aware lookup agrees with the plain one where that one
     * can decide */
    int a = hw_jscan_find(t, "id", 2, &m1);
    int b = hw_jscan_member(t, "id", 2, &m2);
    assert(b == -1 || (a == b && (!a || (m1.p == m2.p && m1.n == m2.n))));
    if (a == 1 && m1.p[0] == '"') {
      char buf[64];
      size_t n;
      int rc = hw_jscan_string(m1, buf, sizeof buf, &n);
      assert(rc == 0 || (rc == -E2BIG && n > sizeof buf));
      if (rc == 0)
        assert(hw_jscan_equal(m1, buf, n));
    }
    if (hw_dedupe_spec_new(HW_DK_FIELD, "id", NULL, 0, &sp) == 0) {
      int rc = hw_dedupe_key(sp, &r, r.body, r.body_len, key, &klen);
      assert(rc == 0 || (rc == 1 && klen > 0 && klen <= HW_DEDUPE_MAX_KEY));
      hw_dedupe_spec_free(sp);
    }
  }
  return 0;
}
