/* crypto: message digests, HMAC, constant-time comparison, OS randomness
 * and public-key signature checks (RS256, ES256) for webhook verification
 * and for cycle code (hw.crypto).
 *
 * Owns: nothing long-lived (every OpenSSL object is freed before return).
 * Uses: OpenSSL's libcrypto (EVP, HMAC, PEM, ECDSA_SIG).
 *
 * Functions return 0 or a negative errno-style code; -EINVAL names a bad
 * argument (unknown algorithm, unreadable key), HW_ESIG a signature that
 * does not verify. */
#ifndef HW_CRYPTO_H
#define HW_CRYPTO_H

#include <stddef.h>

#define HW_CRYPTO_MAX_MD 64 /* SHA-512 */
#define HW_ESIG (-7001)     /* the signature does not verify */

/* Digest of msg with alg ("md5", "sha1", "sha256", "sha384", "sha512");
 * out must hold HW_CRYPTO_MAX_MD bytes; *outlen receives the size. */
int hw_crypto_digest(const char *alg, const void *msg, size_t mlen,
                     unsigned char *out, size_t *outlen);

/* HMAC of msg under key with alg (as for hw_crypto_digest). */
int hw_crypto_hmac(const char *alg, const void *key, size_t klen,
                   const void *msg, size_t mlen, unsigned char *out,
                   size_t *outlen);

/* 1 when a and b hold the same bytes.  The time taken depends on the
 * lengths only, never on where the first difference is. */
int hw_crypto_equal(const void *a, size_t alen, const void *b, size_t blen);

/* n random bytes from a CSPRNG. */
int hw_crypto_random(void *out, size_t n);

/* Checks a public-key signature over msg: alg "RS256" (RSASSA-PKCS1-v1_5
 * with SHA-256) or "ES256" (ECDSA P-256 with SHA-256; sig is JWS's raw
 * r||s, 64 bytes).  pem is a PEM public key (SubjectPublicKeyInfo, or an
 * RSA PUBLIC KEY).  Returns 0 when it verifies, HW_ESIG when it does not,
 * -EINVAL when the key cannot be read or does not fit alg (err says why). */
int hw_crypto_pk_verify(const char *alg, const char *pem, size_t pemlen,
                        const void *msg, size_t mlen, const void *sig,
                        size_t siglen, char *err, size_t errlen);

/* Checks that pem is a public key usable with alg; 0 or -EINVAL (err). */
int hw_crypto_pk_check(const char *alg, const char *pem, size_t pemlen,
                       char *err, size_t errlen);

#endif
