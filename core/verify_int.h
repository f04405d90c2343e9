/* verify_int: what verify.c and verify_auth.c share (the compiled scheme
 * and the check's outcome); nothing else may use it. */
#ifndef HW_VERIFY_INT_H
#define HW_VERIFY_INT_H

#include "verify.h"

enum {
  JWT_HS256 = 1,
  JWT_HS384 = 2,
  JWT_HS512 = 4,
  JWT_RS256 = 8,
  JWT_ES256 = 16
};
extern const char *const hw_verify__jwt_names[5];

struct hw_verify_scheme_s {
  int refs;
  int id;
  int auth; /* kind "auth" (else "signature") */
  unsigned char *key[HW_VERIFY_MAX_SECRETS]; /* decoded keys / credentials */
  size_t klen[HW_VERIFY_MAX_SECRETS];
  int nkey;
  char *pem[HW_VERIFY_MAX_SECRETS];
  size_t pemlen[HW_VERIFY_MAX_SECRETS];
  int npem;
  double tol;
  char *shown;    /* the header as the cycle wrote it */
  char *hname;    /* ... lower case */
  const char *md; /* hmac digest */
  int b64;        /* hmac encoding: base64 (else hex) */
  char *prefix;
  size_t prefix_len;
  int algs; /* jwt: JWT_* mask */
  char *aud, *iss;
  double leeway;
  const char *challenge;
};

struct hw_verify_s {
  int refs;
  int n;
  hw_verify_scheme_t *s[];
};

/* The check's outcome: a reason code and message (NULL code: passed). */
typedef struct {
  const char *code;
  char *msg;
  size_t len;
} out_t;

/* Fills o and returns HW_EVERIFY. */
int hw_verify__no(out_t *o, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "^WORD%s+(%S+)%s*$", WORD without case: 1 with the credential. */
int hw_verify__word(const char *v, size_t n, const char *word, const char **tok,
                    size_t *tlen);
/* Decodes s[0..n) into a malloc'd *out: 0, -EINVAL, -ENOMEM. */
enum { DEC_HEX, DEC_B64, DEC_B64URL };
int hw_verify__decode(const char *s, size_t n, int how, unsigned char **out,
                      size_t *olen);
/* 1 when v equals any of the scheme's keys (all compared, no early exit). */
int hw_verify__any_equal(const hw_verify_scheme_t *s, const void *v, size_t n);
/* The auth schemes' checks (verify_auth.c). */
int hw_verify__basic(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                     out_t *o);
int hw_verify__bearer(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                      out_t *o);
int hw_verify__header(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                      out_t *o);
int hw_verify__jwt(const hw_verify_scheme_t *s, const hw_req_view_t *r,
                   double now, out_t *o);

#endif
