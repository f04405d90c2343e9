/* Unit tests for verify.c: every scheme with a good request, a rotated
 * (second) secret, a bad signature, a stale timestamp, and each malformed
 * or missing header, checking every reason code and message the 401 body
 * and the rejection metrics carry; then lists (first scheme's reason,
 * challenge) and load errors. */
#include "unit.h"
#include "codec.h"
#include "crypto.h"
#include "verify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

/* --- a request: up to 8 headers ------------------------------------------ */

typedef struct {
  const char *name[8];
  char value[8][1024];
  int n;
} hdrs_t;

static const char *get_header(void *ctx, const char *name, size_t *len) {
  hdrs_t *h = ctx;
  for (int i = 0; i < h->n; i++)
    if (strcmp(h->name[i], name) == 0) {
      *len = strlen(h->value[i]);
      return h->value[i];
    }
  return NULL;
}

static hdrs_t H;
static hw_req_view_t R;

static void req(const char *body) {
  memset(&H, 0, sizeof H);
  R.method = "POST";
  R.body = body;
  R.body_len = strlen(body);
  R.header = get_header;
  R.ctx = &H;
}

static void set(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set(const char *name, const char *fmt, ...) {
  va_list ap;
  int i;
  for (i = 0; i < H.n && strcmp(H.name[i], name) != 0; i++)
    ;
  if (i == H.n)
    H.n++;
  H.name[i] = name;
  va_start(ap, fmt);
  vsnprintf(H.value[i], sizeof H.value[i], fmt, ap);
  va_end(ap);
}

/* --- schemes ------------------------------------------------------------- */

static hw_verify_scheme_t *make(int scheme, const char *s1, const char *s2) {
  hw_verify_spec_t sp;
  hw_verify_scheme_t *s;
  char err[256];
  memset(&sp, 0, sizeof sp);
  sp.scheme = scheme;
  sp.secret[0] = s1;
  sp.secret_len[0] = strlen(s1);
  sp.nsecret = 1;
  if (s2) {
    sp.secret[1] = s2;
    sp.secret_len[1] = strlen(s2);
    sp.nsecret = 2;
  }
  sp.tolerance = 300;
  if (hw_verify_scheme_new(&sp, &s, err, sizeof err) != 0) {
    fprintf(stderr, "  make: %s\n", err);
    return NULL;
  }
  return s;
}

static const char *CODE;
static char MSG[256];
static const double NOW = 1700000000;

/* 0 when it passes; else HW_EVERIFY with CODE and MSG */
static int check(const hw_verify_scheme_t *s, double now) {
  CODE = NULL;
  return hw_verify_scheme_check(s, &R, now, &CODE, MSG, sizeof MSG);
}

#define FAILS(s, code, msg) do { ASSERT_EQ(check(s, NOW), HW_EVERIFY); \
  ASSERT_STREQ(CODE, code); ASSERT_STREQ(MSG, msg); } while (0)

/* HMAC of the parts, hex or base64 */
static char *mac(const char *alg, const void *key, size_t klen,
                 const char *msg, int b64) {
  static char out[2][256];
  static int which;
  unsigned char m[HW_CRYPTO_MAX_MD];
  size_t n;
  char *o = out[which++ & 1];
  hw_crypto_hmac(alg, key, klen, msg, strlen(msg), m, &n);
  if (b64)
    hw_b64_encode(m, n, o, 0);
  else
    hw_hex_encode(m, n, o);
  return o;
}

TEST(standard_webhooks_all_reasons) {
  /* the whsec_ secret's key is the base64-decoded rest */
  hw_verify_scheme_t *s = make(HW_VS_STANDARD_WEBHOOKS,
                               "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                               "whsec_c2Vjb25kLXNlY3JldA==");
  unsigned char k1[64], k2[64];
  size_t n1, n2;
  char msg[512];
  ASSERT_TRUE(s != NULL);
  hw_b64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 32, k1, &n1, 0);
  hw_b64_decode("c2Vjb25kLXNlY3JldA==", 20, k2, &n2, 0);
  req("{\"a\":1}");
  snprintf(msg, sizeof msg, "msg_1.%.0f.{\"a\":1}", NOW);
  set("webhook-id", "msg_1");
  set("webhook-timestamp", "%.0f", NOW);
  set("webhook-signature", "v1,%s", mac("sha256", k1, n1, msg, 1));
  ASSERT_EQ(check(s, NOW), 0);
  /* rotation: the second secret; several signatures, one good */
  set("webhook-signature", "v1a,xx v2,AAAA v1,AAAA v1,%s",
      mac("sha256", k2, n2, msg, 1));
  ASSERT_EQ(check(s, NOW), 0);
  /* svix-* names are read too */
  req("{\"a\":1}");
  set("svix-id", "msg_1");
  set("svix-timestamp", "%.0f", NOW);
  set("svix-signature", "v1,%s", mac("sha256", k1, n1, msg, 1));
  ASSERT_EQ(check(s, NOW), 0);
  set("svix-signature", "v1,%s", mac("sha256", "other", 5, msg, 1));
  FAILS(s, "mismatch", "no matching signature");
  /* the body is signed: another body fails */
  req("{\"a\":2}");
  set("webhook-id", "msg_1");
  set("webhook-timestamp", "%.0f", NOW);
  set("webhook-signature", "v1,%s", mac("sha256", k1, n1, msg, 1));
  FAILS(s, "mismatch", "no matching signature");
  /* stale, future, not a number */
  ASSERT_EQ(check(s, NOW + 301), HW_EVERIFY);
  ASSERT_STREQ(CODE, "timestamp");
  ASSERT_STREQ(MSG, "timestamp outside the tolerance of 300 seconds");
  ASSERT_EQ(check(s, NOW - 301), HW_EVERIFY);
  ASSERT_STREQ(CODE, "timestamp");
  set("webhook-timestamp", "-5");
  FAILS(s, "malformed", "timestamp is not a number of seconds");
  set("webhook-timestamp", "%s", "");
  FAILS(s, "malformed", "timestamp is not a number of seconds");
  set("webhook-timestamp", "%.0f", NOW);
  set("webhook-signature", "v2,abc v1 ,x v1,");
  FAILS(s, "malformed", "no v1 signature in webhook-signature");
  set("webhook-signature", "v1,%%%%not-base64");
  FAILS(s, "mismatch", "no matching signature");
  /* missing headers, in the order they are asked for */
  req("{}");
  FAILS(s, "missing", "missing webhook-id header");
  set("webhook-id", "x");
  FAILS(s, "missing", "missing webhook-timestamp header");
  set("webhook-timestamp", "1");
  FAILS(s, "missing", "missing webhook-signature header");
  hw_verify_scheme_free(s);
}

TEST(github_all_reasons) {
  hw_verify_scheme_t *s = make(HW_VS_GITHUB, "It's a Secret to Everybody",
                               "second");
  ASSERT_TRUE(s != NULL);
  req("Hello, World!");
  /* GitHub's documented example */
  set("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
  ASSERT_EQ(check(s, NOW), 0);
  set("x-hub-signature-256", "sha256=%s", mac("sha256", "second", 6, "Hello, World!", 0));
  ASSERT_EQ(check(s, NOW), 0);
  set("x-hub-signature-256", "sha256=%s", mac("sha256", "third", 5, "Hello, World!", 0));
  FAILS(s, "mismatch", "no matching signature");
  set("x-hub-signature-256", "sha1=abcd");
  FAILS(s, "malformed", "X-Hub-Signature-256 is not sha256=HEX");
  set("x-hub-signature-256", "sha256=xyz");
  FAILS(s, "malformed", "X-Hub-Signature-256 is not sha256=HEX");
  req("x");
  FAILS(s, "missing", "missing X-Hub-Signature-256 header");
  hw_verify_scheme_free(s);
}

TEST(stripe_all_reasons) {
  hw_verify_scheme_t *s = make(HW_VS_STRIPE, "whsec_one", "whsec_two");
  char msg[256];
  ASSERT_TRUE(s != NULL);
  req("{\"id\":\"evt_1\"}");
  snprintf(msg, sizeof msg, "%.0f.{\"id\":\"evt_1\"}", NOW);
  set("stripe-signature", "t=%.0f,v1=%s,v0=ignored", NOW,
      mac("sha256", "whsec_one", 9, msg, 0));
  ASSERT_EQ(check(s, NOW), 0);
  set("stripe-signature", " t=%.0f , v1=00 , v1=%s ", NOW,
      mac("sha256", "whsec_two", 9, msg, 0));
  ASSERT_EQ(check(s, NOW), 0);
  set("stripe-signature", "t=%.0f,v1=%s", NOW, mac("sha256", "whsec_x", 7, msg, 0));
  FAILS(s, "mismatch", "no matching signature");
  set("stripe-signature", "t=%.0f,v1=%s", NOW - 1000,
      mac("sha256", "whsec_one", 9, msg, 0));
  FAILS(s, "timestamp", "timestamp outside the tolerance of 300 seconds");
  set("stripe-signature", "v1=%s", mac("sha256", "whsec_one", 9, msg, 0));
  FAILS(s, "malformed", "Stripe-Signature has no t=");
  set("stripe-signature", "t=%.0f,v0=ab", NOW);
  FAILS(s, "malformed", "Stripe-Signature has no v1=");
  set("stripe-signature", "t=soon,v1=ab");
  FAILS(s, "malformed", "timestamp is not a number of seconds");
  set("stripe-signature", ",,,");
  FAILS(s, "malformed", "Stripe-Signature has no t=");
  req("{}");
  FAILS(s, "missing", "missing Stripe-Signature header");
  hw_verify_scheme_free(s);
}

TEST(shopify_all_reasons) {
  hw_verify_scheme_t *s = make(HW_VS_SHOPIFY, "shpss_1", "shpss_2");
  ASSERT_TRUE(s != NULL);
  req("{\"order\":1}");
  set("x-shopify-hmac-sha256", "%s", mac("sha256", "shpss_1", 7, "{\"order\":1}", 1));
  ASSERT_EQ(check(s, NOW), 0);
  set("x-shopify-hmac-sha256", "%s", mac("sha256", "shpss_2", 7, "{\"order\":1}", 1));
  ASSERT_EQ(check(s, NOW), 0);
  set("x-shopify-hmac-sha256", "%s", mac("sha256", "shpss_3", 7, "{\"order\":1}", 1));
  FAILS(s, "mismatch", "no matching signature");
  set("x-shopify-hmac-sha256", "not base64!");
  FAILS(s, "malformed", "X-Shopify-Hmac-Sha256 is not base64");
  req("{}");
  FAILS(s, "missing", "missing X-Shopify-Hmac-Sha256 header");
  hw_verify_scheme_free(s);
}

TEST(slack_all_reasons) {
  /* Slack's documented example */
  hw_verify_scheme_t *s = make(HW_VS_SLACK, "8f742231b10e8888abcd99yyyzzz85a5", "other");
  const char *body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
  char msg[1024];
  ASSERT_TRUE(s != NULL);
  req(body);
  set("x-slack-request-timestamp", "1531420618");
  set("x-slack-signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
  ASSERT_EQ(check(s, 1531420618), 0);
  FAILS(s, "timestamp", "timestamp outside the tolerance of 300 seconds");
  snprintf(msg, sizeof msg, "v0:1531420618:%s", body);
  set("x-slack-signature", "v0=%s", mac("sha256", "other", 5, msg, 0));
  ASSERT_EQ(check(s, 1531420618), 0);
  set("x-slack-signature", "v0=%s", mac("sha256", "nope", 4, msg, 0));
  ASSERT_EQ(check(s, 1531420618), HW_EVERIFY);
  ASSERT_STREQ(CODE, "mismatch");
  set("x-slack-signature", "v1=abcd");
  ASSERT_EQ(check(s, 1531420618), HW_EVERIFY);
  ASSERT_STREQ(MSG, "X-Slack-Signature is not v0=HEX");
  req(body);
  set("x-slack-signature", "v0=ab");
  FAILS(s, "missing", "missing X-Slack-Request-Timestamp header");
  req(body);
  set("x-slack-request-timestamp", "1");
  FAILS(s, "missing", "missing X-Slack-Signature header");
  hw_verify_scheme_free(s);
}

TEST(hmac_options_and_reasons) {
  hw_verify_spec_t sp;
  hw_verify_scheme_t *s;
  char err[256];
  memset(&sp, 0, sizeof sp);
  sp.scheme = HW_VS_HMAC;
  sp.secret[0] = "k1";
  sp.secret_len[0] = 2;
  sp.secret[1] = "k2";
  sp.secret_len[1] = 2;
  sp.nsecret = 2;
  sp.header = "X-Sig";
  sp.algorithm = "sha512";
  sp.encoding = "base64";
  sp.prefix = "sha512=";
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), 0);
  req("payload");
  set("x-sig", "sha512=%s", mac("sha512", "k2", 2, "payload", 1));
  ASSERT_EQ(check(s, NOW), 0);
  set("x-sig", "sha512=%s", mac("sha256", "k2", 2, "payload", 1));
  FAILS(s, "mismatch", "no matching signature");
  set("x-sig", "%s", mac("sha512", "k2", 2, "payload", 1));
  FAILS(s, "malformed", "X-Sig does not start with 'sha512='");
  set("x-sig", "sha512=***");
  FAILS(s, "malformed", "X-Sig is not base64");
  req("payload");
  FAILS(s, "missing", "missing X-Sig header");
  hw_verify_scheme_free(s);
  /* defaults: sha256, hex, no prefix; a bad algorithm is a load error */
  sp.algorithm = NULL;
  sp.encoding = NULL;
  sp.prefix = NULL;
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), 0);
  req("p");
  set("x-sig", "%s", mac("sha256", "k1", 2, "p", 0));
  ASSERT_EQ(check(s, NOW), 0);
  set("x-sig", "zz");
  FAILS(s, "malformed", "X-Sig is not hex");
  hw_verify_scheme_free(s);
  sp.algorithm = "md5";
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), -EINVAL);
  ASSERT_STREQ(err, "hw.verify.hmac: 'algorithm' must be sha1, sha256 or sha512");
}

TEST(basic_bearer_header) {
  hw_verify_spec_t sp;
  hw_verify_scheme_t *s;
  char err[256];
  memset(&sp, 0, sizeof sp);
  sp.scheme = HW_VS_BASIC;
  sp.user = "ann";
  sp.secret[0] = "old";
  sp.secret_len[0] = 3;
  sp.secret[1] = "new";
  sp.secret_len[1] = 3;
  sp.nsecret = 2;
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), 0);
  ASSERT_STREQ(hw_verify_scheme_challenge(s), "Basic realm=\"hookwork\"");
  ASSERT_STREQ(hw_verify_scheme_kind(s), "auth");
  req("");
  set("authorization", "Basic YW5uOm5ldw=="); /* ann:new */
  ASSERT_EQ(check(s, NOW), 0);
  set("authorization", "bAsIc   YW5uOm9sZA==  "); /* ann:old */
  ASSERT_EQ(check(s, NOW), 0);
  set("authorization", "Basic Ym9iOm5ldw=="); /* bob:new */
  FAILS(s, "mismatch", "wrong user or password");
  set("authorization", "Basic");
  FAILS(s, "malformed", "Authorization is not Basic credentials");
  set("authorization", "Basic !!");
  FAILS(s, "malformed", "Authorization is not Basic credentials");
  set("authorization", "Basic a b");
  FAILS(s, "malformed", "Authorization is not Basic credentials");
  req("");
  FAILS(s, "missing", "missing Authorization header");
  hw_verify_scheme_free(s);

  s = make(HW_VS_BEARER, "t1", "t2");
  ASSERT_TRUE(s != NULL);
  ASSERT_STREQ(hw_verify_scheme_challenge(s), "Bearer");
  set("authorization", "Bearer t2");
  ASSERT_EQ(check(s, NOW), 0);
  set("authorization", "bearer t1");
  ASSERT_EQ(check(s, NOW), 0);
  set("authorization", "Bearer t3");
  FAILS(s, "mismatch", "wrong token");
  set("authorization", "Token t1");
  FAILS(s, "malformed", "Authorization is not a Bearer token");
  set("authorization", "Bearert1");
  FAILS(s, "malformed", "Authorization is not a Bearer token");
  hw_verify_scheme_free(s);

  memset(&sp, 0, sizeof sp);
  sp.scheme = HW_VS_HEADER;
  sp.header = "X-Api-Key";
  sp.secret[0] = "v1";
  sp.secret_len[0] = 2;
  sp.nsecret = 1;
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), 0);
  ASSERT_TRUE(hw_verify_scheme_challenge(s) == NULL);
  req("");
  set("x-api-key", "v1");
  ASSERT_EQ(check(s, NOW), 0);
  set("x-api-key", "v1 ");
  FAILS(s, "mismatch", "wrong X-Api-Key value");
  req("");
  FAILS(s, "missing", "missing X-Api-Key header");
  hw_verify_scheme_free(s);
}

/* --- jwt ----------------------------------------------------------------- */

static char TOK[4096];

static void hs_token(const char *alg, const char *md, const char *key,
                     const char *header, const char *claims) {
  char h[512], c[1024], signed_[2048];
  unsigned char m[HW_CRYPTO_MAX_MD];
  size_t n;
  hw_b64_encode(header, strlen(header), h, 1);
  hw_b64_encode(claims, strlen(claims), c, 1);
  snprintf(signed_, sizeof signed_, "%s.%s", h, c);
  hw_crypto_hmac(md, key, strlen(key), signed_, strlen(signed_), m, &n);
  snprintf(TOK, sizeof TOK, "%s.", signed_);
  hw_b64_encode(m, n, TOK + strlen(TOK), 1);
  (void) alg;
}

static hw_verify_scheme_t *jwt(const char *const *algs, int nalgs,
                               const char *secret, const char *pem_path,
                               const char *aud, const char *iss) {
  static char pem[4096];
  hw_verify_spec_t sp;
  hw_verify_scheme_t *s;
  char err[256];
  memset(&sp, 0, sizeof sp);
  sp.scheme = HW_VS_JWT;
  for (int i = 0; i < nalgs; i++)
    sp.algs[i] = algs[i];
  sp.nalgs = nalgs;
  if (secret) {
    sp.secret[0] = secret;
    sp.secret_len[0] = strlen(secret);
    sp.nsecret = 1;
  }
  if (pem_path) {
    FILE *f = fopen(pem_path, "rb");
    size_t n = f ? fread(pem, 1, sizeof pem - 1, f) : 0;
    if (f)
      fclose(f);
    pem[n] = '\0';
    sp.pem[0] = pem;
    sp.pem_len[0] = n;
    sp.npem = 1;
  }
  sp.audience = aud;
  sp.issuer = iss;
  if (hw_verify_scheme_new(&sp, &s, err, sizeof err) != 0) {
    fprintf(stderr, "  jwt: %s\n", err);
    return NULL;
  }
  return s;
}

static char *token_of(const char *name) {
  static char tok[4096];
  FILE *f = fopen("tests/keys/toks.json", "rb");
  char all[16384], key[64], *p, *q;
  size_t n = f ? fread(all, 1, sizeof all - 1, f) : 0;
  if (f)
    fclose(f);
  all[n] = '\0';
  snprintf(key, sizeof key, "\"%s\": \"", name);
  if ((p = strstr(all, key)) == NULL)
    return NULL;
  p += strlen(key);
  q = strchr(p, '"');
  snprintf(tok, sizeof tok, "%.*s", (int) (q - p), p);
  return tok;
}

TEST(jwt_hs_claims_and_reasons) {
  static const char *const algs[] = {"HS256", "HS512"};
  hw_verify_scheme_t *s = jwt(algs, 2, "sekrit", NULL, "hookwork", "me");
  ASSERT_TRUE(s != NULL);
  ASSERT_STREQ(hw_verify_scheme_challenge(s), "Bearer");
  req("");
  hs_token("HS256", "sha256", "sekrit", "{\"alg\":\"HS256\"}",
           "{\"exp\":1700000100,\"nbf\":1699999000,\"iss\":\"me\",\"aud\":[\"x\",\"hookwork\"]}");
  set("authorization", "Bearer %s", TOK);
  ASSERT_EQ(check(s, NOW), 0);
  ASSERT_EQ(check(s, NOW + 100), HW_EVERIFY);
  ASSERT_STREQ(CODE, "expired");
  ASSERT_STREQ(MSG, "token expired");
  ASSERT_EQ(check(s, 1699998999), HW_EVERIFY);
  ASSERT_STREQ(CODE, "claims");
  ASSERT_STREQ(MSG, "token not valid yet");
  hs_token("HS512", "sha512", "sekrit", "{\"alg\":\"HS512\"}",
           "{\"iss\":\"me\",\"aud\":\"hookwork\"}");
  set("authorization", "Bearer %s", TOK);
  ASSERT_EQ(check(s, NOW), 0);
  hs_token("HS256", "sha256", "wrong", "{\"alg\":\"HS256\"}",
           "{\"iss\":\"me\",\"aud\":\"hookwork\"}");
  set("authorization", "Bearer %s", TOK);
  FAILS(s, "mismatch", "bad token signature");
  hs_token("HS384", "sha384", "sekrit", "{\"alg\":\"HS384\"}", "{}");
  set("authorization", "Bearer %s", TOK);
  FAILS(s, "algorithm", "token algorithm HS384 is not allowed");
  hs_token("none", "sha256", "sekrit", "{\"typ\":\"JWT\"}", "{}");
  set("authorization", "Bearer %s", TOK);
  FAILS(s, "algorithm", "token algorithm nil is not allowed");
  hs_token("HS256", "sha256", "sekrit", "{\"alg\":\"HS256\"}",
           "{\"iss\":\"you\",\"aud\":\"hookwork\"}");
  set("authorization", "Bearer %s", TOK);
  FAILS(s, "claims", "token issuer does not match");
  hs_token("HS256", "sha256", "sekrit", "{\"alg\":\"HS256\"}",
           "{\"iss\":\"me\",\"aud\":[\"x\"]}");
  set("authorization", "Bearer %s", TOK);
  FAILS(s, "claims", "token audience does not match");
  hs_token("HS256", "sha256", "sekrit", "{\"alg\":\"HS256\"}",
           "{\"iss\":\"me\",\"aud\":\"hookwork\",\"exp\":\"soon\"}");
  set("authorization", "Bearer %s", TOK);
  FAILS(s, "expired", "token expired");
  hs_token("HS256", "sha256", "sekrit", "{\"alg\":\"HS256\"}", "[1,2");
  set("authorization", "Bearer %s", TOK);
  FAILS(s, "malformed", "token is not a JWT");
  hs_token("HS256", "sha256", "sekrit", "{\"alg\":\"HS256\"}", "\"str\"");
  set("authorization", "Bearer %s", TOK);
  FAILS(s, "malformed", "token is not a JWT");
  set("authorization", "Bearer a.b");
  FAILS(s, "malformed", "token is not a JWT");
  set("authorization", "Bearer a.b.c.d");
  FAILS(s, "malformed", "token is not a JWT");
  set("authorization", "Bearer a+b.c.d");
  FAILS(s, "malformed", "token is not a JWT");
  set("authorization", "Bearer a.b.c"); /* does not decode */
  FAILS(s, "malformed", "token is not a JWT");
  set("authorization", "Basic abc");
  FAILS(s, "malformed", "Authorization is not a Bearer token");
  req("");
  FAILS(s, "missing", "missing Authorization header");
  hw_verify_scheme_free(s);
}

TEST(jwt_rs256_es256) {
  static const char *const rs[] = {"RS256"}, *const es[] = {"ES256"};
  hw_verify_scheme_t *s = jwt(rs, 1, NULL, "tests/keys/rsa.pub", "hookwork",
                              "https://issuer.example");
  hw_verify_scheme_t *e = jwt(es, 1, NULL, "tests/keys/ec.pub", NULL, NULL);
  hw_verify_scheme_t *other = jwt(rs, 1, NULL, "tests/keys/rsa2.pub", NULL, NULL);
  ASSERT_TRUE(s != NULL && e != NULL && other != NULL);
  req("");
  set("authorization", "Bearer %s", token_of("RS256_ok"));
  ASSERT_EQ(check(s, NOW), 0);
  FAILS(other, "mismatch", "bad token signature");
  FAILS(e, "algorithm", "token algorithm RS256 is not allowed");
  set("authorization", "Bearer %s", token_of("RS256_expired"));
  FAILS(s, "expired", "token expired");
  set("authorization", "Bearer %s", token_of("ES256_ok"));
  ASSERT_EQ(check(e, NOW), 0);
  set("authorization", "Bearer %s", token_of("ES256_expired"));
  FAILS(e, "expired", "token expired");
  hw_verify_scheme_free(s);
  hw_verify_scheme_free(e);
  hw_verify_scheme_free(other);
  /* a key that does not fit the algorithms is a load error */
  ASSERT_TRUE(jwt(es, 1, NULL, "tests/keys/rsa.pub", NULL, NULL) == NULL);
}

TEST(jwt_custom_header_takes_raw_or_bearer) {
  static const char *const hs[] = {"HS256"};
  hw_verify_spec_t sp;
  hw_verify_scheme_t *s;
  char err[256];
  memset(&sp, 0, sizeof sp);
  sp.scheme = HW_VS_JWT;
  sp.algs[0] = hs[0];
  sp.nalgs = 1;
  sp.secret[0] = "k";
  sp.secret_len[0] = 1;
  sp.nsecret = 1;
  sp.header = "X-Token";
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), 0);
  ASSERT_TRUE(hw_verify_scheme_challenge(s) == NULL);
  req("");
  hs_token("HS256", "sha256", "k", "{\"alg\":\"HS256\"}", "{}");
  set("x-token", "%s", TOK);
  ASSERT_EQ(check(s, NOW), 0);
  set("x-token", "Bearer %s", TOK);
  ASSERT_EQ(check(s, NOW), 0);
  set("x-token", "junk");
  FAILS(s, "malformed", "token is not a JWT");
  req("");
  FAILS(s, "missing", "missing X-Token header");
  hw_verify_scheme_free(s);
}

/* --- lists and load errors ----------------------------------------------- */

TEST(list_first_scheme_names_the_failure) {
  hw_verify_scheme_t *two[2];
  hw_verify_t *v;
  hw_verify_result_t res;
  two[0] = make(HW_VS_BEARER, "tok", NULL);
  two[1] = make(HW_VS_GITHUB, "gh", NULL);
  ASSERT_EQ(hw_verify_new(two, 2, &v), 0);
  hw_verify_retain(v);
  hw_verify_release(v); /* still one reference */
  ASSERT_EQ(hw_verify_count(v), 2);
  req("body");
  set("x-hub-signature-256", "sha256=%s", mac("sha256", "gh", 2, "body", 0));
  ASSERT_EQ(hw_verify_check(v, &R, NOW, &res), 0); /* the second passes */
  req("body");
  ASSERT_EQ(hw_verify_check(v, &R, NOW, &res), HW_EVERIFY);
  ASSERT_STREQ(res.message, "auth: missing Authorization header");
  ASSERT_STREQ(res.reason, "auth_missing");
  ASSERT_STREQ(res.challenge, "Bearer");
  hw_verify_release(v);
}

TEST(load_errors_name_the_option_never_the_secret) {
  hw_verify_spec_t sp;
  hw_verify_scheme_t *s;
  char err[256];
  memset(&sp, 0, sizeof sp);
  sp.scheme = HW_VS_STANDARD_WEBHOOKS;
  sp.secret[0] = "whsec_AAAA";
  sp.secret_len[0] = 10;
  sp.secret[1] = "whsec_not*base64";
  sp.secret_len[1] = 16;
  sp.nsecret = 2;
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), -EINVAL);
  ASSERT_STREQ(err, "hw.verify.standard_webhooks: secret 2 is not whsec_ "
                    "followed by base64");
  sp.secret[1] = "whsec_";
  sp.secret_len[1] = 6;
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), -EINVAL);
  memset(&sp, 0, sizeof sp);
  sp.scheme = HW_VS_JWT;
  sp.algs[0] = "HS1024";
  sp.nalgs = 1;
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), -EINVAL);
  ASSERT_STREQ(err, "hw.verify.jwt: unknown algorithm 'HS1024' (HS256, HS384, "
                    "HS512, RS256, ES256)");
  sp.algs[0] = "RS256";
  sp.pem[0] = "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n";
  sp.pem_len[0] = strlen(sp.pem[0]);
  sp.npem = 1;
  ASSERT_EQ(hw_verify_scheme_new(&sp, &s, err, sizeof err), -EINVAL);
  ASSERT_STREQ(err, "hw.verify.jwt: public_key 1 is not a PEM public key for RS256");
}

TEST(delivery_ids) {
  const char *h1, *h2, *f;
  hw_verify_scheme_t *s = make(HW_VS_STANDARD_WEBHOOKS, "whsec_AAAA", NULL);
  ASSERT_EQ(hw_verify_delivery(s, &h1, &h2, &f), 1);
  ASSERT_STREQ(h1, "webhook-id");
  ASSERT_STREQ(h2, "svix-id");
  hw_verify_scheme_free(s);
  s = make(HW_VS_STRIPE, "x", NULL);
  ASSERT_EQ(hw_verify_delivery(s, &h1, &h2, &f), 1);
  ASSERT_STREQ(f, "id");
  hw_verify_scheme_free(s);
  s = make(HW_VS_BEARER, "x", NULL);
  ASSERT_EQ(hw_verify_delivery(s, &h1, &h2, &f), 0);
  hw_verify_scheme_free(s);
}

RUN_TESTS("verify", T(standard_webhooks_all_reasons), T(github_all_reasons),
          T(stripe_all_reasons), T(shopify_all_reasons), T(slack_all_reasons),
          T(hmac_options_and_reasons), T(basic_bearer_header),
          T(jwt_hs_claims_and_reasons), T(jwt_rs256_es256),
          T(jwt_custom_header_takes_raw_or_bearer),
          T(list_first_scheme_names_the_failure),
          T(load_errors_name_the_option_never_the_secret), T(delivery_ids))
