/* verify: the webhook door's signature and credential checks (SPEC "The
 * door"), compiled once per load and run in C over the exact raw bytes
 * received: standard_webhooks (Svix), github, stripe, shopify, slack,
 * hmac (without a payload function), basic, bearer, header and jwt
 * (HS256/HS384/HS512, RS256, ES256).  The Lua side (verify.lua) checks the
 * option table's shape and builds specs; the C accept path calls
 * hw_verify_check directly.
 *
 * Owns: the compiled schemes (their decoded secrets and PEM keys), freed
 * with the last reference to the list.
 * Uses: crypto.c (HMAC, constant-time compare, public-key checks), codec.c
 * (base64, hex), jscan.c (the JWT header and claims).
 *
 * Every comparison of secret material is constant-time and never stops at
 * the first match (the time does not tell which secret matched).  Failure
 * messages name the reason, never a secret or the expected value.  Loop
 * thread only (the reference count is not atomic). */
#ifndef HW_VERIFY_H
#define HW_VERIFY_H

#include <stddef.h>

/* A request as the door sees it.  header(ctx, name, &len) returns the value
 * of the header `name` (lower case) or NULL when absent; the value must stay
 * valid for the duration of the check. */
typedef struct hw_req_view_s {
  const char *method;
  const char *body; /* raw bytes received (before Content-Encoding) */
  size_t body_len;
  const char *(*header)(void *ctx, const char *name, size_t *len);
  void *ctx;
} hw_req_view_t;

enum {
  HW_VS_STANDARD_WEBHOOKS,
  HW_VS_GITHUB,
  HW_VS_STRIPE,
  HW_VS_SHOPIFY,
  HW_VS_SLACK,
  HW_VS_HMAC,
  HW_VS_BASIC,
  HW_VS_BEARER,
  HW_VS_HEADER,
  HW_VS_JWT,
  HW_VS_COUNT
};

/* The scheme names as in hw.verify.NAME (index: HW_VS_*). */
extern const char *const hw_verify_names[HW_VS_COUNT];

#define HW_VERIFY_MAX_SECRETS 16
#define HW_EVERIFY (-7101) /* the request does not pass (result says why) */

/* What a scheme is built from: the option table after verify.lua has
 * checked its shape (types, unknown options).  Strings are copied. */
typedef struct hw_verify_spec_s {
  int scheme;                                /* HW_VS_* */
  const char *secret[HW_VERIFY_MAX_SECRETS]; /* secret / password / token /
                                                value / jwt secret */
  size_t secret_len[HW_VERIFY_MAX_SECRETS];
  int nsecret;
  const char *pem[HW_VERIFY_MAX_SECRETS]; /* jwt public_key */
  size_t pem_len[HW_VERIFY_MAX_SECRETS];
  int npem;
  double tolerance;      /* seconds (standard_webhooks, stripe, slack) */
  const char *header;    /* hmac, header, jwt: the header as written */
  const char *algorithm; /* hmac: sha1, sha256, sha512 */
  const char *encoding;  /* hmac: hex or base64 */
  const char *prefix;    /* hmac */
  const char *user;      /* basic */
  const char *algs[5];   /* jwt algorithms */
  int nalgs;
  const char *audience, *issuer; /* jwt, NULL when not checked */
  double leeway;                 /* jwt */
} hw_verify_spec_t;

typedef struct hw_verify_scheme_s hw_verify_scheme_t;
typedef struct hw_verify_s hw_verify_t;

/* Why a request failed, for the 401 and the metrics. */
typedef struct hw_verify_result_s {
  char message[256];     /* "signature: no matching signature" */
  char reason[32];       /* metric reason: "signature_mismatch" */
  const char *challenge; /* WWW-Authenticate value, or NULL */
} hw_verify_result_t;

/* Compiles one scheme.  0, or -EINVAL with the load error in err ("hw.verify
 * .standard_webhooks: secret 2 is not whsec_ followed by base64"), -ENOMEM. */
int hw_verify_scheme_new(const hw_verify_spec_t *spec, hw_verify_scheme_t **out,
                         char *err, size_t errlen);
/* Schemes are reference counted (one scheme may serve several webhooks'
 * lists): retain adds one, free drops one (the last frees it). */
void hw_verify_scheme_retain(hw_verify_scheme_t *s);
void hw_verify_scheme_free(hw_verify_scheme_t *s);
/* "signature" or "auth"; the scheme's HW_VS_* kind. */
const char *hw_verify_scheme_kind(const hw_verify_scheme_t *s);
int hw_verify_scheme_id(const hw_verify_scheme_t *s);
/* The scheme's WWW-Authenticate challenge, or NULL. */
const char *hw_verify_scheme_challenge(const hw_verify_scheme_t *s);

/* Checks one scheme: 0 when the request passes; HW_EVERIFY with *code (the
 * reason code: "missing", "malformed", "timestamp", "mismatch", "algorithm",
 * "expired", "claims") and msg ("no matching signature") otherwise. */
int hw_verify_scheme_check(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                           double now, const char **code, char *msg,
                           size_t msglen);

/* A list of schemes, any one passing is enough.  Takes over one reference
 * of each of the n schemes (dropped with the list, also on failure).  The list
 * starts with one reference. */
int hw_verify_new(hw_verify_scheme_t **schemes, int n, hw_verify_t **out);
void hw_verify_retain(hw_verify_t *v);
void hw_verify_release(hw_verify_t *v);
int hw_verify_count(const hw_verify_t *v);
const hw_verify_scheme_t *hw_verify_at(const hw_verify_t *v, int i);

/* Checks a request against the list at `now` (seconds since the epoch):
 * 0 when one scheme passes, else HW_EVERIFY with res filled from the first
 * scheme's failure: message "signature: REASON" / "auth: REASON" (the
 * body's error), reason "KIND_CODE" (the rejection metric) and challenge. */
int hw_verify_check(const hw_verify_t *v, const hw_req_view_t *r, double now,
                    hw_verify_result_t *res);

/* The delivery id a scheme names (dedupe = true): up to two header names
 * (standard_webhooks: webhook-id then svix-id; github: x-github-delivery;
 * shopify: x-shopify-webhook-id) or a top-level body field (stripe: "id").
 * Returns 1 when the scheme has one, 0 when not. */
int hw_verify_delivery(const hw_verify_scheme_t *s, const char **header1,
                       const char **header2, const char **field);

#endif
