/* crypto: digests, HMAC, constant-time comparison, randomness and
 * public-key signature checks on OpenSSL's libcrypto (see crypto.h). */
#include "crypto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

static const EVP_MD *md_of(const char *alg) {
  if (alg == NULL)
    return NULL;
  if (strcmp(alg, "sha256") == 0)
    return EVP_sha256();
  if (strcmp(alg, "sha1") == 0)
    return EVP_sha1();
  if (strcmp(alg, "sha512") == 0)
    return EVP_sha512();
  if (strcmp(alg, "sha384") == 0)
    return EVP_sha384();
  if (strcmp(alg, "md5") == 0)
    return EVP_md5();
  return NULL;
}

int hw_crypto_digest(const char *alg, const void *msg, size_t mlen,
                     unsigned char *out, size_t *outlen) {
  const EVP_MD *md = md_of(alg);
  unsigned int n = 0;
  if (md == NULL)
    return -EINVAL;
  if (EVP_Digest(msg, mlen, out, &n, md, NULL) != 1)
    return -ENOMEM;
  *outlen = n;
  return 0;
}

int hw_crypto_hmac(const char *alg, const void *key, size_t klen,
                   const void *msg, size_t mlen, unsigned char *out,
                   size_t *outlen) {
  const EVP_MD *md = md_of(alg);
  unsigned int n = 0;
  static const unsigned char empty[1];
  if (md == NULL || klen > 0x7fffffff)
    return -EINVAL;
  /* HMAC() treats a NULL key as "no key" in some versions: pass a real
   * pointer for an empty key so the result is HMAC with "" */
  if (HMAC(md, klen ? key : empty, (int) klen,
           mlen ? msg : empty, mlen, out, &n) == NULL)
    return -ENOMEM;
  *outlen = n;
  return 0;
}

int hw_crypto_equal(const void *a, size_t alen, const void *b, size_t blen) {
  /* Lengths are not secret (a signature's length is public); the bytes
   * are compared in full whatever they hold. */
  if (alen != blen)
    return 0;
  if (alen == 0)
    return 1;
  return CRYPTO_memcmp(a, b, alen) == 0;
}

int hw_crypto_random(void *out, size_t n) {
  if (n > 0x7fffffff)
    return -EINVAL;
  return RAND_bytes(out, (int) n) == 1 ? 0 : -EIO;
}

static void set_err(char *err, size_t errlen, const char *msg) {
  if (err != NULL && errlen > 0)
    snprintf(err, errlen, "%s", msg);
}

/* Any PEM public key: SubjectPublicKeyInfo ("PUBLIC KEY") or PKCS#1
 * ("RSA PUBLIC KEY"); the decoder tries every format it knows. */
static EVP_PKEY *read_key(const char *pem, size_t pemlen) {
  OSSL_DECODER_CTX *dctx;
  EVP_PKEY *pk = NULL;
  const unsigned char *p = (const unsigned char *) pem;
  size_t left = pemlen;
  dctx = OSSL_DECODER_CTX_new_for_pkey(&pk, "PEM", NULL, NULL,
                                       EVP_PKEY_PUBLIC_KEY, NULL, NULL);
  if (dctx == NULL)
    return NULL;
  if (OSSL_DECODER_from_data(dctx, &p, &left) != 1) {
    EVP_PKEY_free(pk);
    pk = NULL;
  }
  OSSL_DECODER_CTX_free(dctx);
  ERR_clear_error(); /* leave no error on the thread's queue for curl */
  return pk;
}

/* The key fits alg: RSA for RS256, EC P-256 for ES256. */
static int key_fits(const char *alg, EVP_PKEY *pk, char *err, size_t errlen) {
  if (strcmp(alg, "RS256") == 0) {
    if (EVP_PKEY_base_id(pk) != EVP_PKEY_RSA) {
      set_err(err, errlen, "RS256 needs an RSA public key");
      return -EINVAL;
    }
    return 0;
  }
  if (strcmp(alg, "ES256") == 0) {
    char curve[64] = "";
    size_t len = 0;
    if (EVP_PKEY_base_id(pk) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(pk, "group", curve, sizeof curve,
                                       &len) != 1 ||
        (strcmp(curve, "prime256v1") != 0 && strcmp(curve, "P-256") != 0)) {
      ERR_clear_error();
      set_err(err, errlen, "ES256 needs an EC P-256 public key");
      return -EINVAL;
    }
    return 0;
  }
  set_err(err, errlen, "unknown public-key algorithm");
  return -EINVAL;
}

int hw_crypto_pk_check(const char *alg, const char *pem, size_t pemlen,
                       char *err, size_t errlen) {
  EVP_PKEY *pk = read_key(pem, pemlen);
  int rc;
  if (pk == NULL) {
    set_err(err, errlen, "not a PEM public key");
    return -EINVAL;
  }
  rc = key_fits(alg, pk, err, errlen);
  EVP_PKEY_free(pk);
  return rc;
}

/* JWS ES256 signatures are r||s (32 bytes each); EVP wants DER.  Returns
 * the DER length in *derlen (der must hold 80 bytes) or -EINVAL. */
static int es256_der(const unsigned char *sig, size_t siglen,
                     unsigned char *der, size_t *derlen) {
  ECDSA_SIG *es;
  BIGNUM *r, *s;
  unsigned char *p = der;
  int n;
  if (siglen != 64)
    return -EINVAL;
  es = ECDSA_SIG_new();
  r = BN_bin2bn(sig, 32, NULL);
  s = BN_bin2bn(sig + 32, 32, NULL);
  if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return -ENOMEM;
  }
  n = i2d_ECDSA_SIG(es, NULL);
  if (n <= 0 || n > 80) {
    ECDSA_SIG_free(es);
    return -EINVAL;
  }
  n = i2d_ECDSA_SIG(es, &p);
  ECDSA_SIG_free(es); /* frees r and s too */
  if (n <= 0)
    return -EINVAL;
  *derlen = (size_t) n;
  return 0;
}

int hw_crypto_pk_verify(const char *alg, const char *pem, size_t pemlen,
                        const void *msg, size_t mlen, const void *sig,
                        size_t siglen, char *err, size_t errlen) {
  EVP_PKEY *pk = read_key(pem, pemlen);
  EVP_MD_CTX *ctx = NULL;
  unsigned char der[80];
  const unsigned char *s = sig;
  size_t slen = siglen;
  int rc;

  if (pk == NULL) {
    set_err(err, errlen, "not a PEM public key");
    return -EINVAL;
  }
  rc = key_fits(alg, pk, err, errlen);
  if (rc == 0 && strcmp(alg, "ES256") == 0) {
    if (es256_der(sig, siglen, der, &slen) != 0) {
      rc = HW_ESIG; /* a malformed signature simply does not verify */
      goto done;
    }
    s = der;
  }
  if (rc != 0)
    goto done;
  ctx = EVP_MD_CTX_new();
  if (ctx == NULL) {
    rc = -ENOMEM;
    goto done;
  }
  if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pk) != 1) {
    set_err(err, errlen, "cannot use this key");
    rc = -EINVAL;
    goto done;
  }
  rc = EVP_DigestVerify(ctx, s, slen, msg, mlen) == 1 ? 0 : HW_ESIG;
done:
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pk);
  ERR_clear_error();
  return rc;
}
