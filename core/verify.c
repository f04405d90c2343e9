/* verify: the door's schemes in C (see verify.h).  Each check mirrors the
 * SPEC's scheme word for word: the same order of tests and the same reason
 * strings the 401 body and the rejection metrics carry. */
#include "verify.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codec.h"
#include "crypto.h"
#include "verify_int.h"

const char *const hw_verify_names[HW_VS_COUNT] = {"standard_webhooks",
                                                  "github",
                                                  "stripe",
                                                  "shopify",
                                                  "slack",
                                                  "hmac",
                                                  "basic",
                                                  "bearer",
                                                  "header",
                                                  "jwt"};

/* --------------------------------------------------------------- build */

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p != NULL) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static char *dup_s(const char *s) {
  return s ? dup_n(s, strlen(s)) : NULL;
}

static char *lower_dup(const char *s) {
  char *p = dup_s(s);
  for (char *q = p; q && *q; q++)
    *q = (char)tolower((unsigned char)*q);
  return p;
}

static int add_key(hw_verify_scheme_t *s, const void *k, size_t n) {
  if (s->nkey >= HW_VERIFY_MAX_SECRETS)
    return -EINVAL;
  if ((s->key[s->nkey] = (unsigned char *)dup_n(k, n)) == NULL)
    return -ENOMEM;
  s->klen[s->nkey++] = n;
  return 0;
}

static int jwt_alg(const char *a, size_t n) {
  for (int i = 0; i < 5; i++)
    if (strlen(hw_verify__jwt_names[i]) == n &&
        memcmp(hw_verify__jwt_names[i], a, n) == 0)
      return 1 << i;
  return 0;
}

static int build(hw_verify_scheme_t *s, const hw_verify_spec_t *sp, char *err,
                 size_t errlen) {
  const char *name = hw_verify_names[sp->scheme];
  int i, rc;
  s->tol = sp->tolerance > 0 ? sp->tolerance : 300;
  if (sp->nsecret > HW_VERIFY_MAX_SECRETS || sp->npem > HW_VERIFY_MAX_SECRETS) {
    snprintf(err, errlen, "hw.verify.%s: at most %d secrets", name,
             HW_VERIFY_MAX_SECRETS);
    return -EINVAL;
  }
  switch (sp->scheme) {
  case HW_VS_STANDARD_WEBHOOKS:
    for (i = 0; i < sp->nsecret; i++) {
      const char *k = sp->secret[i];
      size_t n = sp->secret_len[i], out;
      unsigned char *buf;
      if (n >= 6 && memcmp(k, "whsec_", 6) == 0)
        k += 6, n -= 6;
      if ((buf = malloc(n / 4 * 3 + 3)) == NULL)
        return -ENOMEM;
      if (hw_b64_decode(k, n, buf, &out, 0) != 0 || out == 0) {
        free(buf);
        snprintf(err, errlen,
                 "hw.verify.standard_webhooks: secret %d is not whsec_ "
                 "followed by base64",
                 i + 1);
        return -EINVAL;
      }
      rc = add_key(s, buf, out);
      free(buf);
      if (rc != 0)
        return rc;
    }
    return 0;
  case HW_VS_BASIC:
    if (sp->user == NULL)
      return -EINVAL;
    for (i = 0; i < sp->nsecret; i++) {
      size_t un = strlen(sp->user), n = un + 1 + sp->secret_len[i];
      char *c = malloc(n);
      if (c == NULL)
        return -ENOMEM;
      memcpy(c, sp->user, un);
      c[un] = ':';
      memcpy(c + un + 1, sp->secret[i], sp->secret_len[i]);
      rc = add_key(s, c, n);
      free(c);
      if (rc != 0)
        return rc;
    }
    s->challenge = "Basic realm=\"hookwork\"";
    return 0;
  case HW_VS_JWT:
    for (i = 0; i < sp->nalgs; i++) {
      int a = jwt_alg(sp->algs[i], strlen(sp->algs[i]));
      if (a == 0) {
        snprintf(err, errlen,
                 "hw.verify.jwt: unknown algorithm '%s' (HS256, "
                 "HS384, HS512, RS256, ES256)",
                 sp->algs[i]);
        return -EINVAL;
      }
      s->algs |= a;
    }
    if (s->algs == 0)
      s->algs = JWT_HS256;
    for (i = 0; i < sp->npem; i++) {
      int fits = 0;
      char e2[128];
      for (int a = 3; a < 5; a++)
        if ((s->algs & (1 << a)) &&
            hw_crypto_pk_check(hw_verify__jwt_names[a], sp->pem[i],
                               sp->pem_len[i], e2, sizeof e2) == 0)
          fits = 1;
      if (!fits) {
        char list[64] = "";
        for (int j = 0; j < sp->nalgs; j++)
          snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                   j ? "/" : "", sp->algs[j]);
        snprintf(err, errlen,
                 "hw.verify.jwt: public_key %d is not a PEM "
                 "public key for %s",
                 i + 1, sp->nalgs ? list : "HS256");
        return -EINVAL;
      }
      if ((s->pem[i] = dup_n(sp->pem[i], sp->pem_len[i])) == NULL)
        return -ENOMEM;
      s->pemlen[i] = sp->pem_len[i];
      s->npem++;
    }
    if ((sp->audience && !(s->aud = dup_s(sp->audience))) ||
        (sp->issuer && !(s->iss = dup_s(sp->issuer))))
      return -ENOMEM;
    s->leeway = sp->leeway;
    if (sp->header == NULL) {
      s->shown = dup_s("Authorization");
      s->hname = dup_s("authorization");
    }
    break;
  case HW_VS_HMAC:
    s->md = sp->algorithm ? sp->algorithm : "sha256";
    if (strcmp(s->md, "sha1") && strcmp(s->md, "sha256") &&
        strcmp(s->md, "sha512")) {
      snprintf(err, errlen,
               "hw.verify.hmac: 'algorithm' must be sha1, sha256 or sha512");
      return -EINVAL;
    }
    s->md = strcmp(s->md, "sha1") == 0     ? "sha1"
            : strcmp(s->md, "sha512") == 0 ? "sha512"
                                           : "sha256";
    s->b64 = sp->encoding && strcmp(sp->encoding, "base64") == 0;
    if ((s->prefix = dup_s(sp->prefix ? sp->prefix : "")) == NULL)
      return -ENOMEM;
    s->prefix_len = strlen(s->prefix);
    break;
  case HW_VS_BEARER:
    s->challenge = "Bearer";
    break;
  default:
    break;
  }
  if (sp->header != NULL && s->shown == NULL) {
    s->shown = dup_s(sp->header);
    s->hname = lower_dup(sp->header);
  }
  if (sp->scheme == HW_VS_JWT && s->hname &&
      strcmp(s->hname, "authorization") == 0)
    s->challenge = "Bearer";
  if ((sp->scheme == HW_VS_HMAC || sp->scheme == HW_VS_HEADER ||
       sp->scheme == HW_VS_JWT) &&
      (s->shown == NULL || s->hname == NULL))
    return sp->header == NULL ? -EINVAL : -ENOMEM;
  for (i = 0; i < sp->nsecret; i++)
    if ((rc = add_key(s, sp->secret[i], sp->secret_len[i])) != 0)
      return rc;
  return 0;
}

int hw_verify_scheme_new(const hw_verify_spec_t *sp, hw_verify_scheme_t **out,
                         char *err, size_t errlen) {
  hw_verify_scheme_t *s;
  int rc;
  *out = NULL;
  if (errlen)
    err[0] = '\0';
  if (sp->scheme < 0 || sp->scheme >= HW_VS_COUNT)
    return -EINVAL;
  if ((s = calloc(1, sizeof *s)) == NULL)
    return -ENOMEM;
  s->refs = 1;
  s->id = sp->scheme;
  s->auth = sp->scheme >= HW_VS_BASIC;
  if ((rc = build(s, sp, err, errlen)) != 0) {
    if (errlen && err[0] == '\0')
      snprintf(err, errlen, "hw.verify.%s: %s", hw_verify_names[sp->scheme],
               rc == -ENOMEM ? "out of memory" : "invalid options");
    hw_verify_scheme_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void hw_verify_scheme_retain(hw_verify_scheme_t *s) {
  s->refs++;
}

void hw_verify_scheme_free(hw_verify_scheme_t *s) {
  if (s == NULL || --s->refs > 0)
    return;
  for (int i = 0; i < s->nkey; i++) {
    memset(s->key[i], 0, s->klen[i]);
    free(s->key[i]);
  }
  for (int i = 0; i < s->npem; i++)
    free(s->pem[i]);
  free(s->shown);
  free(s->hname);
  free(s->prefix);
  free(s->aud);
  free(s->iss);
  free(s);
}

const char *hw_verify_scheme_kind(const hw_verify_scheme_t *s) {
  return s->auth ? "auth" : "signature";
}
int hw_verify_scheme_id(const hw_verify_scheme_t *s) {
  return s->id;
}
const char *hw_verify_scheme_challenge(const hw_verify_scheme_t *s) {
  return s->challenge;
}

int hw_verify_new(hw_verify_scheme_t **schemes, int n, hw_verify_t **out) {
  hw_verify_t *v;
  *out = NULL;
  if (n <= 0 || (v = malloc(sizeof *v + (size_t)n * sizeof v->s[0])) == NULL) {
    for (int i = 0; i < n; i++)
      hw_verify_scheme_free(schemes[i]);
    return n <= 0 ? -EINVAL : -ENOMEM;
  }
  v->refs = 1;
  v->n = n;
  memcpy(v->s, schemes, (size_t)n * sizeof v->s[0]);
  *out = v;
  return 0;
}

void hw_verify_retain(hw_verify_t *v) {
  v->refs++;
}

void hw_verify_release(hw_verify_t *v) {
  if (v == NULL || --v->refs > 0)
    return;
  for (int i = 0; i < v->n; i++)
    hw_verify_scheme_free(v->s[i]);
  free(v);
}

int hw_verify_count(const hw_verify_t *v) {
  return v->n;
}
const hw_verify_scheme_t *hw_verify_at(const hw_verify_t *v, int i) {
  return i >= 0 && i < v->n ? v->s[i] : NULL;
}

/* --------------------------------------------------------------- check */

const char *const hw_verify__jwt_names[5] = {"HS256", "HS384", "HS512", "RS256",
                                             "ES256"};

int hw_verify__no(out_t *o, const char *code, const char *fmt, ...) {
  va_list ap;
  o->code = code;
  va_start(ap, fmt);
  vsnprintf(o->msg, o->len, fmt, ap);
  va_end(ap);
  return HW_EVERIFY;
}

static const char *hdr(const hw_req_view_t *r, const char *name, size_t *n) {
  return r->header(r->ctx, name, n);
}

/* A number as Lua prints it (tostring / U.scalar_string): integral values
 * without ".0". */
static void num_text(double v, char *buf, size_t len) {
  if (v == floor(v) && v > -9007199254740992.0 && v < 9007199254740992.0)
    snprintf(buf, len, "%.0f", v == 0 ? 0.0 : v);
  else
    snprintf(buf, len, "%.14g", v);
}

/* "^%d+$" read as a number, then within the tolerance of now. */
static int timestamp_ok(const hw_verify_scheme_t *s, const char *ts, size_t n,
                        double now, out_t *o) {
  char buf[64], tol[32];
  double t = 0;
  size_t i;
  for (i = 0; i < n; i++)
    if (ts[i] < '0' || ts[i] > '9')
      break;
  if (n == 0 || i < n)
    return hw_verify__no(o, "malformed",
                         "timestamp is not a number of seconds");
  if (n < sizeof buf) {
    memcpy(buf, ts, n);
    buf[n] = '\0';
    t = strtod(buf, NULL);
  } else {
    t = HUGE_VAL; /* more digits than any time */
  }
  if (fabs(now - t) > s->tol) {
    num_text(s->tol, tol, sizeof tol);
    return hw_verify__no(o, "timestamp",
                         "timestamp outside the tolerance of %s seconds", tol);
  }
  return 0;
}

/* Signatures given in a header, decoded; at most MAX_GIVEN are looked at. */
#define MAX_GIVEN 16
typedef struct {
  unsigned char *buf[MAX_GIVEN];
  size_t len[MAX_GIVEN];
  int n;
} given_t;

static void given_free(given_t *g) {
  for (int i = 0; i < g->n; i++)
    free(g->buf[i]);
  g->n = 0;
}

/* Adds the decoding of s[0..n) (hex, base64 or base64url); an entry that
 * does not decode is kept as "" (it can match nothing).  -ENOMEM. */
int hw_verify__decode(const char *s, size_t n, int how, unsigned char **out,
                      size_t *olen) {
  unsigned char *b = malloc(n / 2 + n / 4 * 3 + 4);
  int rc;
  if (b == NULL)
    return -ENOMEM;
  rc = how == DEC_HEX ? hw_hex_decode(s, n, b, olen)
                      : hw_b64_decode(s, n, b, olen, how == DEC_B64URL);
  if (rc != 0) {
    free(b);
    return -EINVAL;
  }
  *out = b;
  return 0;
}

static int given_add(given_t *g, const char *s, size_t n, int how) {
  int rc;
  if (g->n >= MAX_GIVEN)
    return 0;
  rc = hw_verify__decode(s, n, how, &g->buf[g->n], &g->len[g->n]);
  if (rc == -ENOMEM)
    return rc;
  if (rc != 0) {
    if ((g->buf[g->n] = malloc(1)) == NULL)
      return -ENOMEM;
    g->len[g->n] = 0;
  }
  g->n++;
  return 0;
}

/* Any key's MAC of msg (parts concatenated) equals any given one; every
 * pair is compared, with no early exit. */
static int signed_by(const hw_verify_scheme_t *s, const char *md,
                     const char *const *part, const size_t *plen, int nparts,
                     const given_t *g, int *hit) {
  size_t total = 0, off = 0;
  char *msg;
  const void *m;
  int i, j;
  *hit = 0;
  for (i = 0; i < nparts; i++)
    total += plen[i];
  if (nparts == 1) {
    m = part[0];
    msg = NULL;
  } else {
    if ((msg = malloc(total ? total : 1)) == NULL)
      return -ENOMEM;
    for (i = 0; i < nparts; i++) {
      memcpy(msg + off, part[i], plen[i]);
      off += plen[i];
    }
    m = msg;
  }
  for (i = 0; i < s->nkey; i++) {
    unsigned char mac[HW_CRYPTO_MAX_MD];
    size_t mlen;
    if (hw_crypto_hmac(md, s->key[i], s->klen[i], m, total, mac, &mlen) != 0) {
      free(msg);
      return -ENOMEM;
    }
    for (j = 0; j < g->n; j++)
      if (hw_crypto_equal(mac, mlen, g->buf[j], g->len[j]))
        *hit = 1;
  }
  free(msg);
  return 0;
}

int hw_verify__any_equal(const hw_verify_scheme_t *s, const void *v, size_t n) {
  int hit = 0;
  for (int i = 0; i < s->nkey; i++)
    if (hw_crypto_equal(s->key[i], s->klen[i], v, n))
      hit = 1;
  return hit;
}

static int is_space(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r';
}

static int is_alnum_(int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || c == '_';
}

/* "^WORD%s+(%S+)%s*$" with WORD matched without case: the credential. */
int hw_verify__word(const char *v, size_t n, const char *word, const char **tok,
                    size_t *tlen) {
  size_t w = strlen(word), i = w, start;
  if (n <= w || strncasecmp(v, word, w) != 0 || !is_space((unsigned char)v[w]))
    return 0;
  while (i < n && is_space((unsigned char)v[i]))
    i++;
  start = i;
  while (i < n && !is_space((unsigned char)v[i]))
    i++;
  if (i == start)
    return 0;
  *tok = v + start;
  *tlen = i - start;
  while (i < n && is_space((unsigned char)v[i]))
    i++;
  return i == n;
}

/* "PREFIX" then hex (GitHub, Slack): 0 with g filled, -EINVAL otherwise. */
static int hex_after(const char *v, size_t n, const char *prefix, given_t *g) {
  size_t p = strlen(prefix);
  unsigned char *b;
  size_t len;
  int rc;
  if (n < p || memcmp(v, prefix, p) != 0)
    return -EINVAL;
  if ((rc = hw_verify__decode(v + p, n - p, DEC_HEX, &b, &len)) != 0)
    return rc;
  g->buf[0] = b;
  g->len[0] = len;
  g->n = 1;
  return 0;
}

static int mac_verdict(const hw_verify_scheme_t *s, const char *md,
                       const char *const *part, const size_t *plen, int np,
                       given_t *g, out_t *o) {
  int hit, rc = signed_by(s, md, part, plen, np, g, &hit);
  given_free(g);
  if (rc != 0)
    return rc;
  return hit ? 0 : hw_verify__no(o, "mismatch", "no matching signature");
}

static int check_standard(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                          double now, out_t *o) {
  size_t idn, tsn, sgn;
  const char *id = hdr(r, "webhook-id", &idn);
  const char *ts = hdr(r, "webhook-timestamp", &tsn);
  const char *sig = hdr(r, "webhook-signature", &sgn);
  given_t g = {0};
  int rc;
  if (!id)
    id = hdr(r, "svix-id", &idn);
  if (!ts)
    ts = hdr(r, "svix-timestamp", &tsn);
  if (!sig)
    sig = hdr(r, "svix-signature", &sgn);
  if (!id)
    return hw_verify__no(o, "missing", "missing webhook-id header");
  if (!ts)
    return hw_verify__no(o, "missing", "missing webhook-timestamp header");
  if (!sig)
    return hw_verify__no(o, "missing", "missing webhook-signature header");
  if ((rc = timestamp_ok(s, ts, tsn, now, o)) != 0)
    return rc;
  /* entries "vN[a-z]*,BASE64" separated by white space; v1 ones count */
  for (size_t i = 0; i < sgn;) {
    size_t a, e, k;
    while (i < sgn && is_space((unsigned char)sig[i]))
      i++;
    a = i;
    while (i < sgn && !is_space((unsigned char)sig[i]))
      i++;
    e = i;
    if (a == e)
      break;
    k = a + 1;
    if (sig[a] != 'v' || k >= e || sig[k] < '0' || sig[k] > '9')
      continue;
    while (k < e && sig[k] >= '0' && sig[k] <= '9')
      k++;
    size_t vend = k;
    while (k < e && sig[k] >= 'a' && sig[k] <= 'z')
      k++;
    if (k >= e - 1 || sig[k] != ',')
      continue; /* no comma, or nothing after it */
    if (vend == k && vend - a == 2 && sig[a + 1] == '1' &&
        (rc = given_add(&g, sig + k + 1, e - k - 1, DEC_B64)) != 0) {
      given_free(&g);
      return rc;
    }
  }
  if (g.n == 0)
    return hw_verify__no(o, "malformed",
                         "no v1 signature in webhook-signature");
  const char *part[] = {id, ".", ts, ".", r->body};
  size_t plen[] = {idn, 1, tsn, 1, r->body_len};
  return mac_verdict(s, "sha256", part, plen, 5, &g, o);
}

static int check_github(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                        out_t *o) {
  size_t n;
  const char *v = hdr(r, "x-hub-signature-256", &n);
  given_t g = {0};
  int rc;
  if (!v)
    return hw_verify__no(o, "missing", "missing X-Hub-Signature-256 header");
  if ((rc = hex_after(v, n, "sha256=", &g)) == -ENOMEM)
    return rc;
  if (rc != 0)
    return hw_verify__no(o, "malformed",
                         "X-Hub-Signature-256 is not sha256=HEX");
  const char *part[] = {r->body};
  size_t plen[] = {r->body_len};
  return mac_verdict(s, "sha256", part, plen, 1, &g, o);
}

static int check_stripe(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                        double now, out_t *o) {
  size_t n, tsn = 0;
  const char *v = hdr(r, "stripe-signature", &n), *ts = NULL;
  given_t g = {0};
  int rc;
  if (!v)
    return hw_verify__no(o, "missing", "missing Stripe-Signature header");
  /* items "KEY=VALUE" between commas, spaces around them ignored */
  for (size_t i = 0; i < n;) {
    size_t a = i, e, k, ks;
    while (i < n && v[i] != ',')
      i++;
    e = i;
    i++;
    if (a == e)
      continue;
    k = a;
    while (k < e && is_space((unsigned char)v[k]))
      k++;
    ks = k;
    while (k < e && is_alnum_((unsigned char)v[k]))
      k++;
    if (k == ks || k >= e || v[k] != '=')
      continue;
    size_t x = k + 1, xe = e;
    while (xe > x && is_space((unsigned char)v[xe - 1]))
      xe--;
    if (k - ks == 1 && v[ks] == 't') {
      ts = v + x;
      tsn = xe - x;
    } else if (k - ks == 2 && v[ks] == 'v' && v[ks + 1] == '1' &&
               (rc = given_add(&g, v + x, xe - x, DEC_HEX)) != 0) {
      given_free(&g);
      return rc;
    }
  }
  if (!ts)
    return given_free(&g),
           hw_verify__no(o, "malformed", "Stripe-Signature has no t=");
  if (g.n == 0)
    return hw_verify__no(o, "malformed", "Stripe-Signature has no v1=");
  if ((rc = timestamp_ok(s, ts, tsn, now, o)) != 0)
    return given_free(&g), rc;
  const char *part[] = {ts, ".", r->body};
  size_t plen[] = {tsn, 1, r->body_len};
  return mac_verdict(s, "sha256", part, plen, 3, &g, o);
}

static int check_shopify(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                         out_t *o) {
  size_t n;
  const char *v = hdr(r, "x-shopify-hmac-sha256", &n);
  given_t g = {0};
  int rc;
  if (!v)
    return hw_verify__no(o, "missing", "missing X-Shopify-Hmac-Sha256 header");
  if ((rc = hw_verify__decode(v, n, DEC_B64, &g.buf[0], &g.len[0])) == -ENOMEM)
    return rc;
  if (rc != 0)
    return hw_verify__no(o, "malformed", "X-Shopify-Hmac-Sha256 is not base64");
  g.n = 1;
  const char *part[] = {r->body};
  size_t plen[] = {r->body_len};
  return mac_verdict(s, "sha256", part, plen, 1, &g, o);
}

static int check_slack(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                       double now, out_t *o) {
  size_t n, tsn;
  const char *v = hdr(r, "x-slack-signature", &n);
  const char *ts = hdr(r, "x-slack-request-timestamp", &tsn);
  given_t g = {0};
  int rc;
  if (!v)
    return hw_verify__no(o, "missing", "missing X-Slack-Signature header");
  if (!ts)
    return hw_verify__no(o, "missing",
                         "missing X-Slack-Request-Timestamp header");
  if ((rc = timestamp_ok(s, ts, tsn, now, o)) != 0)
    return rc;
  if ((rc = hex_after(v, n, "v0=", &g)) == -ENOMEM)
    return rc;
  if (rc != 0)
    return hw_verify__no(o, "malformed", "X-Slack-Signature is not v0=HEX");
  const char *part[] = {"v0:", ts, ":", r->body};
  size_t plen[] = {3, tsn, 1, r->body_len};
  return mac_verdict(s, "sha256", part, plen, 4, &g, o);
}

static int check_hmac(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                      out_t *o) {
  size_t n;
  const char *v = hdr(r, s->hname, &n);
  given_t g = {0};
  int rc;
  if (!v)
    return hw_verify__no(o, "missing", "missing %s header", s->shown);
  if (n < s->prefix_len || memcmp(v, s->prefix, s->prefix_len) != 0)
    return hw_verify__no(o, "malformed", "%s does not start with '%s'",
                         s->shown, s->prefix);
  rc = hw_verify__decode(v + s->prefix_len, n - s->prefix_len,
                         s->b64 ? DEC_B64 : DEC_HEX, &g.buf[0], &g.len[0]);
  if (rc == -ENOMEM)
    return rc;
  if (rc != 0)
    return hw_verify__no(o, "malformed", "%s is not %s", s->shown,
                         s->b64 ? "base64" : "hex");
  g.n = 1;
  const char *part[] = {r->body};
  size_t plen[] = {r->body_len};
  return mac_verdict(s, s->md, part, plen, 1, &g, o);
}

int hw_verify_scheme_check(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                           double now, const char **code, char *msg,
                           size_t msglen) {
  out_t o = {NULL, msg, msglen};
  int rc;
  if (msglen)
    msg[0] = '\0';
  switch (s->id) {
  case HW_VS_STANDARD_WEBHOOKS:
    rc = check_standard(s, r, now, &o);
    break;
  case HW_VS_GITHUB:
    rc = check_github(s, r, &o);
    break;
  case HW_VS_STRIPE:
    rc = check_stripe(s, r, now, &o);
    break;
  case HW_VS_SHOPIFY:
    rc = check_shopify(s, r, &o);
    break;
  case HW_VS_SLACK:
    rc = check_slack(s, r, now, &o);
    break;
  case HW_VS_HMAC:
    rc = check_hmac(s, r, &o);
    break;
  case HW_VS_BASIC:
    rc = hw_verify__basic(s, r, &o);
    break;
  case HW_VS_BEARER:
    rc = hw_verify__bearer(s, r, &o);
    break;
  case HW_VS_HEADER:
    rc = hw_verify__header(s, r, &o);
    break;
  case HW_VS_JWT:
    rc = hw_verify__jwt(s, r, now, &o);
    break;
  default:
    rc = -EINVAL;
  }
  if (rc != 0 && rc != HW_EVERIFY) {
    /* out of memory: the request cannot be verified, so it does not pass */
    o.code = "error";
    snprintf(msg, msglen, "cannot check the signature (out of memory)");
    rc = HW_EVERIFY;
  }
  *code = o.code;
  return rc;
}

int hw_verify_check(const hw_verify_t *v, const hw_req_view_t *r, double now,
                    hw_verify_result_t *res) {
  int first = 1;
  for (int i = 0; i < v->n; i++) {
    const hw_verify_scheme_t *s = v->s[i];
    const char *code;
    char msg[200];
    if (hw_verify_scheme_check(s, r, now, &code, msg, sizeof msg) == 0)
      return 0;
    if (first) {
      const char *kind = hw_verify_scheme_kind(s);
      snprintf(res->message, sizeof res->message, "%s: %s", kind, msg);
      snprintf(res->reason, sizeof res->reason, "%s_%s", kind, code);
      res->challenge = s->challenge;
      first = 0;
    }
  }
  return HW_EVERIFY;
}

int hw_verify_delivery(const hw_verify_scheme_t *s, const char **header1,
                       const char **header2, const char **field) {
  *header1 = *header2 = *field = NULL;
  switch (s->id) {
  case HW_VS_STANDARD_WEBHOOKS:
    *header1 = "webhook-id";
    *header2 = "svix-id";
    return 1;
  case HW_VS_GITHUB:
    *header1 = "x-github-delivery";
    return 1;
  case HW_VS_SHOPIFY:
    *header1 = "x-shopify-webhook-id";
    return 1;
  case HW_VS_STRIPE:
    *field = "id";
    return 1;
  default:
    return 0;
  }
}
