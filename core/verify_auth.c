/* verify_auth: the checks of the "auth" schemes (see verify.h): basic,
 * bearer, header, and jwt (JWS compact: the header's alg must be one the
 * webhook allows; HS* with its secrets, RS256/ES256 with its PEM keys; then
 * exp, nbf, iss and aud, read from the claims in place with jscan.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "jscan.h"
#include "verify_int.h"

int hw_verify__basic(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                     out_t *o) {
  size_t n, tn, clen;
  const char *v = r->header(r->ctx, "authorization", &n), *t;
  unsigned char *cred;
  int hit;
  if (!v)
    return hw_verify__no(o, "missing", "missing Authorization header");
  if (!hw_verify__word(v, n, "basic", &t, &tn) ||
      hw_verify__decode(t, tn, DEC_B64, &cred, &clen) != 0)
    return hw_verify__no(o, "malformed",
                         "Authorization is not Basic credentials");
  hit = hw_verify__any_equal(s, cred, clen);
  free(cred);
  return hit ? 0 : hw_verify__no(o, "mismatch", "wrong user or password");
}

int hw_verify__bearer(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                      out_t *o) {
  size_t n, tn;
  const char *v = r->header(r->ctx, "authorization", &n), *t;
  if (!v)
    return hw_verify__no(o, "missing", "missing Authorization header");
  if (!hw_verify__word(v, n, "bearer", &t, &tn))
    return hw_verify__no(o, "malformed", "Authorization is not a Bearer token");
  return hw_verify__any_equal(s, t, tn)
             ? 0
             : hw_verify__no(o, "mismatch", "wrong token");
}

int hw_verify__header(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                      out_t *o) {
  size_t n;
  const char *v = r->header(r->ctx, s->hname, &n);
  if (!v)
    return hw_verify__no(o, "missing", "missing %s header", s->shown);
  return hw_verify__any_equal(s, v, n)
             ? 0
             : hw_verify__no(o, "mismatch", "wrong %s value", s->shown);
}

static int b64url_char(int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || c == '_' || c == '-';
}

static int is_number(hw_jslice_t t) {
  return t.n > 0 && (t.p[0] == '-' || (t.p[0] >= '0' && t.p[0] <= '9'));
}

/* A claim that is a number, as a double; 0 when absent, -1 when present
 * but not a number (null included), 1 with *v. */
static int claim_number(hw_jslice_t claims, const char *name, double *v) {
  hw_jslice_t t;
  if (!hw_jscan_find(claims, name, strlen(name), &t))
    return 0;
  if (!is_number(t))
    return -1;
  *v = hw_jscan_double(t);
  return 1;
}

/* The alg value as Lua's tostring would show it (for the message). */
static void alg_text(hw_jslice_t t, int present, char *buf, size_t len) {
  size_t n;
  int64_t i;
  int literal;
  if (!present) {
    snprintf(buf, len, "nil");
    return;
  }
  switch (t.p[0]) {
  case '"':
    if (hw_jscan_string(t, buf, len - 1, &n) != 0)
      n = len - 1;
    buf[n] = '\0';
    return;
  case 't':
    snprintf(buf, len, "true");
    return;
  case 'f':
    snprintf(buf, len, "false");
    return;
  case 'n':
    snprintf(buf, len, "null");
    return;
  case '{':
  case '[':
    snprintf(buf, len, "table");
    return;
  default:
    if (hw_jscan_integer(t, &i, &literal) && literal)
      snprintf(buf, len, "%lld", (long long)i);
    else
      snprintf(buf, len, "%.14g", hw_jscan_double(t));
    return;
  }
}

static int check_sig(const hw_verify_scheme_t *s, int alg, const char *signed_,
                     size_t slen, const unsigned char *sig, size_t siglen,
                     int *good) {
  *good = 0;
  if (alg & (JWT_HS256 | JWT_HS384 | JWT_HS512)) {
    const char *md = alg == JWT_HS256   ? "sha256"
                     : alg == JWT_HS384 ? "sha384"
                                        : "sha512";
    for (int i = 0; i < s->nkey; i++) {
      unsigned char mac[HW_CRYPTO_MAX_MD];
      size_t mlen;
      if (hw_crypto_hmac(md, s->key[i], s->klen[i], signed_, slen, mac,
                         &mlen) != 0)
        return -ENOMEM;
      if (hw_crypto_equal(mac, mlen, sig, siglen))
        *good = 1; /* no early exit */
    }
    return 0;
  }
  const char *name = alg == JWT_RS256 ? "RS256" : "ES256";
  for (int i = 0; i < s->npem; i++) {
    char err[128];
    if (hw_crypto_pk_verify(name, s->pem[i], s->pemlen[i], signed_, slen, sig,
                            siglen, err, sizeof err) == 0)
      *good = 1;
  }
  return 0;
}

static int check_claims(const hw_verify_scheme_t *s, hw_jslice_t cl, double now,
                        out_t *o) {
  double v;
  hw_jslice_t t;
  int rc = claim_number(cl, "exp", &v);
  if (rc < 0 || (rc > 0 && now >= v + s->leeway))
    return hw_verify__no(o, "expired", "token expired");
  rc = claim_number(cl, "nbf", &v);
  if (rc < 0 || (rc > 0 && now < v - s->leeway))
    return hw_verify__no(o, "claims", "token not valid yet");
  if (s->iss && !(hw_jscan_find(cl, "iss", 3, &t) &&
                  hw_jscan_equal(t, s->iss, strlen(s->iss))))
    return hw_verify__no(o, "claims", "token issuer does not match");
  if (s->aud) {
    int hit = 0;
    size_t alen = strlen(s->aud);
    if (hw_jscan_find(cl, "aud", 3, &t)) {
      if (t.p[0] == '"') {
        hit = hw_jscan_equal(t, s->aud, alen);
      } else if (t.p[0] == '[') {
        const char *pos = t.p;
        hw_jslice_t e;
        while (hw_jscan_elem(&pos, t.p + t.n, &e))
          if (hw_jscan_equal(e, s->aud, alen))
            hit = 1;
      }
    }
    if (!hit)
      return hw_verify__no(o, "claims", "token audience does not match");
  }
  return 0;
}

int hw_verify__jwt(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                   double now, out_t *o) {
  size_t n, tn, dots[2], nd = 0, hn, pn, sn;
  const char *v = r->header(r->ctx, s->hname, &n), *tok;
  unsigned char *hj = NULL, *pj = NULL, *sig = NULL;
  hw_jslice_t hd, cl, at = {NULL, 0};
  int rc, alg = 0, good, has_alg;
  char text[64];
  if (!v)
    return hw_verify__no(o, "missing", "missing %s header", s->shown);
  if (!hw_verify__word(v, n, "bearer", &tok, &tn)) {
    if (strcmp(s->hname, "authorization") == 0)
      return hw_verify__no(o, "malformed",
                           "Authorization is not a Bearer token");
    tok = v;
    tn = n;
  }
  for (size_t i = 0; i < tn; i++) {
    if (tok[i] == '.') {
      if (nd == 2)
        return hw_verify__no(o, "malformed", "token is not a JWT");
      dots[nd++] = i;
    } else if (!b64url_char((unsigned char)tok[i])) {
      return hw_verify__no(o, "malformed", "token is not a JWT");
    }
  }
  if (nd != 2 || dots[0] == 0 || dots[1] == dots[0] + 1)
    return hw_verify__no(o, "malformed", "token is not a JWT");
  rc = hw_verify__decode(tok, dots[0], DEC_B64URL, &hj, &hn);
  if (rc == 0)
    rc = hw_verify__decode(tok + dots[0] + 1, dots[1] - dots[0] - 1, DEC_B64URL,
                           &pj, &pn);
  if (rc == 0)
    rc = hw_verify__decode(tok + dots[1] + 1, tn - dots[1] - 1, DEC_B64URL,
                           &sig, &sn);
  if (rc == -ENOMEM)
    goto done;
  /* (the Lua side took any table: an array decodes, with no members) */
  if (rc != 0 || hw_jscan_check((char *)hj, hn, &hd) != 0 ||
      hw_jscan_check((char *)pj, pn, &cl) != 0 ||
      (hd.p[0] != '{' && hd.p[0] != '[') ||
      (cl.p[0] != '{' && cl.p[0] != '[')) {
    rc = hw_verify__no(o, "malformed", "token is not a JWT");
    goto done;
  }
  has_alg = hw_jscan_find(hd, "alg", 3, &at);
  if (has_alg && at.p[0] == '"') {
    char a[8];
    size_t an;
    if (hw_jscan_string(at, a, sizeof a, &an) == 0)
      for (int i = 0; i < 5; i++)
        if (strlen(hw_verify__jwt_names[i]) == an &&
            memcmp(hw_verify__jwt_names[i], a, an) == 0)
          alg = 1 << i;
  }
  if (!(alg & s->algs)) {
    alg_text(at, has_alg, text, sizeof text);
    rc = hw_verify__no(o, "algorithm", "token algorithm %s is not allowed",
                       text);
    goto done;
  }
  if ((rc = check_sig(s, alg, tok, dots[1], sig, sn, &good)) != 0)
    goto done;
  if (!good) {
    rc = hw_verify__no(o, "mismatch", "bad token signature");
    goto done;
  }
  rc = check_claims(s, cl, now, o);
done:
  free(hj);
  free(pj);
  free(sig);
  return rc;
}
