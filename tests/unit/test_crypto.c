/* Unit tests for crypto.c and codec.c against published vectors (RFC 4231,
 * RFC 2202, RFC 4648, FIPS 180, GitHub's documented webhook example) and
 * against signatures made by the openssl command line (tests/keys/). */
#include "unit.h"
#include "codec.h"
#include "crypto.h"

#include <errno.h>
#include <zlib.h>

static char hexbuf[2 * HW_CRYPTO_MAX_MD + 1];

static const char *hmac_hex(const char *alg, const char *key, const char *msg) {
  unsigned char out[HW_CRYPTO_MAX_MD];
  size_t n;
  if (hw_crypto_hmac(alg, key, strlen(key), msg, strlen(msg), out, &n) != 0)
    return "(error)";
  hw_hex_encode(out, n, hexbuf);
  return hexbuf;
}

static const char *digest_hex(const char *alg, const char *msg) {
  unsigned char out[HW_CRYPTO_MAX_MD];
  size_t n;
  if (hw_crypto_digest(alg, msg, strlen(msg), out, &n) != 0)
    return "(error)";
  hw_hex_encode(out, n, hexbuf);
  return hexbuf;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf;
  long n;
  if (f == NULL)
    return NULL;
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  rewind(f);
  buf = malloc((size_t) n + 1);
  if (buf == NULL || fread(buf, 1, (size_t) n, f) != (size_t) n) {
    free(buf);
    fclose(f);
    return NULL;
  }
  buf[n] = '\0';
  fclose(f);
  *len = (size_t) n;
  return buf;
}

TEST(hmac_rfc4231_and_rfc2202) {
  ASSERT_STREQ(hmac_hex("sha256", "Jefe", "what do ya want for nothing?"),
               "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  ASSERT_STREQ(hmac_hex("sha512", "Jefe", "what do ya want for nothing?"),
               "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
               "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737");
  ASSERT_STREQ(hmac_hex("sha1", "Jefe", "what do ya want for nothing?"),
               "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
  ASSERT_STREQ(hmac_hex("md5", "Jefe", "what do ya want for nothing?"),
               "750c783e6ab0b503eaa86e310a5db738");
  /* an empty key and an empty message are HMACs like any other */
  ASSERT_STREQ(hmac_hex("sha256", "", ""),
               "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(github_documented_example) {
  ASSERT_STREQ(hmac_hex("sha256", "It's a Secret to Everybody", "Hello, World!"),
               "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17");
}

TEST(digests_fips180) {
  ASSERT_STREQ(digest_hex("sha256", "abc"),
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  ASSERT_STREQ(digest_hex("sha1", "abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  ASSERT_STREQ(digest_hex("md5", ""), "d41d8cd98f00b204e9800998ecf8427e");
  ASSERT_STREQ(digest_hex("sha512", "abc"),
               "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
               "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
}

TEST(unknown_algorithm_is_einval) {
  unsigned char out[HW_CRYPTO_MAX_MD];
  size_t n;
  ASSERT_EQ(hw_crypto_digest("sha3", "a", 1, out, &n), -EINVAL);
  ASSERT_EQ(hw_crypto_hmac("SHA-256", "k", 1, "a", 1, out, &n), -EINVAL);
  ASSERT_EQ(hw_crypto_hmac(NULL, "k", 1, "a", 1, out, &n), -EINVAL);
}

TEST(equal_compares_every_byte) {
  ASSERT_EQ(hw_crypto_equal("abc", 3, "abc", 3), 1);
  ASSERT_EQ(hw_crypto_equal("abc", 3, "abd", 3), 0);
  ASSERT_EQ(hw_crypto_equal("abc", 3, "ab", 2), 0);
  ASSERT_EQ(hw_crypto_equal("a\0c", 3, "a\0d", 3), 0);
  ASSERT_EQ(hw_crypto_equal("", 0, "", 0), 1);
}

TEST(random_bytes_differ) {
  unsigned char a[32], b[32];
  ASSERT_EQ(hw_crypto_random(a, sizeof a), 0);
  ASSERT_EQ(hw_crypto_random(b, sizeof b), 0);
  ASSERT_TRUE(memcmp(a, b, sizeof a) != 0);
}

TEST(base64_rfc4648) {
  static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const std[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                    "Zm9vYmFy"};
  static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
  char out[32];
  unsigned char dec[32];
  size_t i, n;
  for (i = 0; i < 7; i++) {
    hw_b64_encode(in[i], strlen(in[i]), out, 0);
    ASSERT_STREQ(out, std[i]);
    hw_b64_encode(in[i], strlen(in[i]), out, 1);
    ASSERT_STREQ(out, url[i]);
    ASSERT_EQ(hw_b64_decode(std[i], strlen(std[i]), dec, &n, 0), 0);
    ASSERT_EQ(n, strlen(in[i]));
    ASSERT_TRUE(memcmp(dec, in[i], n) == 0);
    ASSERT_EQ(hw_b64_decode(url[i], strlen(url[i]), dec, &n, 1), 0);
    ASSERT_EQ(n, strlen(in[i]));
  }
  /* the two alphabets are kept apart; garbage and bad lengths refused */
  hw_b64_encode("\xfb\xff", 2, out, 0);
  ASSERT_STREQ(out, "+/8=");
  hw_b64_encode("\xfb\xff", 2, out, 1);
  ASSERT_STREQ(out, "-_8");
  ASSERT_EQ(hw_b64_decode("-_8", 3, dec, &n, 0), -EINVAL);
  ASSERT_EQ(hw_b64_decode("+/8", 3, dec, &n, 1), -EINVAL);
  ASSERT_EQ(hw_b64_decode("Zm9v!", 5, dec, &n, 0), -EINVAL);
  ASSERT_EQ(hw_b64_decode("Z", 1, dec, &n, 0), -EINVAL);
  ASSERT_EQ(hw_b64_decode("Zg=", 3, dec, &n, 0), -EINVAL);
}

TEST(hex_both_cases) {
  unsigned char dec[8];
  char out[17];
  size_t n;
  hw_hex_encode("\x00\xab\xff", 3, out);
  ASSERT_STREQ(out, "00abff");
  ASSERT_EQ(hw_hex_decode("00ABff", 6, dec, &n), 0);
  ASSERT_EQ(n, 3);
  ASSERT_TRUE(memcmp(dec, "\x00\xab\xff", 3) == 0);
  ASSERT_EQ(hw_hex_decode("abc", 3, dec, &n), -EINVAL);
  ASSERT_EQ(hw_hex_decode("zz", 2, dec, &n), -EINVAL);
}

/* Splits a compact JWS and checks its signature with the key in file. */
static int jws_check(const char *tok, const char *alg, const char *keyfile) {
  const char *dot = strrchr(tok, '.');
  unsigned char sig[512];
  size_t siglen, pemlen;
  char err[128], *pem = slurp(keyfile, &pemlen);
  int rc;
  if (pem == NULL || dot == NULL)
    return -999;
  if (hw_b64_decode(dot + 1, strlen(dot + 1), sig, &siglen, 1) != 0) {
    free(pem);
    return -998;
  }
  rc = hw_crypto_pk_verify(alg, pem, pemlen, tok, (size_t) (dot - tok), sig,
                           siglen, err, sizeof err);
  free(pem);
  return rc;
}

static char *token(const char *name) {
  static char buf[2048];
  size_t n;
  char *all = slurp("tests/keys/toks.json", &n), *p, *q;
  if (all == NULL)
    return "";
  p = strstr(all, name);
  p = p ? strchr(p + strlen(name) + 1, '"') : NULL;
  q = p ? strchr(p + 1, '"') : NULL;
  if (p == NULL || q == NULL || (size_t) (q - p) >= sizeof buf) {
    free(all);
    return "";
  }
  memcpy(buf, p + 1, (size_t) (q - p - 1));
  buf[q - p - 1] = '\0';
  free(all);
  return buf;
}

TEST(rs256_and_es256_signatures) {
  char tok[2048];
  snprintf(tok, sizeof tok, "%s", token("RS256_ok"));
  ASSERT_EQ(jws_check(tok, "RS256", "tests/keys/rsa.pub"), 0);
  ASSERT_EQ(jws_check(tok, "RS256", "tests/keys/rsa_pkcs1.pub"), 0);
  ASSERT_EQ(jws_check(tok, "RS256", "tests/keys/rsa2.pub"), HW_ESIG);
  ASSERT_EQ(jws_check(tok, "ES256", "tests/keys/rsa.pub"), -EINVAL);
  tok[10] ^= 1; /* one changed byte of the signed header */
  ASSERT_EQ(jws_check(tok, "RS256", "tests/keys/rsa.pub"), HW_ESIG);
  snprintf(tok, sizeof tok, "%s", token("ES256_ok"));
  ASSERT_EQ(jws_check(tok, "ES256", "tests/keys/ec.pub"), 0);
  ASSERT_EQ(jws_check(tok, "ES256", "tests/keys/ec2.pub"), HW_ESIG);
  ASSERT_EQ(jws_check(tok, "RS256", "tests/keys/ec.pub"), -EINVAL);
  tok[strlen(tok) - 3] = tok[strlen(tok) - 3] == 'A' ? 'B' : 'A';
  ASSERT_EQ(jws_check(tok, "ES256", "tests/keys/ec.pub"), HW_ESIG);
  ASSERT_EQ(hw_crypto_pk_check("RS256", "not a key", 9, NULL, 0), -EINVAL);
  ASSERT_EQ(hw_crypto_pk_verify("ES256", "x", 1, "m", 1, "s", 1, NULL, 0), -EINVAL);
}

static size_t gz(const char *in, size_t n, unsigned char *out, size_t cap, int wbits) {
  z_stream z;
  memset(&z, 0, sizeof z);
  deflateInit2(&z, 9, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY);
  z.next_in = (Bytef *) in;
  z.avail_in = (uInt) n;
  z.next_out = out;
  z.avail_out = (uInt) cap;
  deflate(&z, Z_FINISH);
  n = cap - z.avail_out;
  deflateEnd(&z);
  return n;
}

TEST(inflate_gzip_deflate_and_bombs) {
  static unsigned char zbuf[1 << 16];
  char *big = calloc(1, 1 << 20), *out = NULL;
  size_t zn, on;
  ASSERT_TRUE(big != NULL);
  zn = gz("{\"a\":1}", 7, zbuf, sizeof zbuf, 16 + MAX_WBITS);
  ASSERT_EQ(hw_inflate(zbuf, zn, HW_INFLATE_GZIP, 100, &out, &on), 0);
  ASSERT_EQ(on, 7);
  ASSERT_STREQ(out, "{\"a\":1}");
  free(out);
  zn = gz("hello", 5, zbuf, sizeof zbuf, MAX_WBITS); /* zlib-wrapped */
  ASSERT_EQ(hw_inflate(zbuf, zn, HW_INFLATE_DEFLATE, 100, &out, &on), 0);
  ASSERT_STREQ(out, "hello");
  free(out);
  zn = gz("hello", 5, zbuf, sizeof zbuf, -MAX_WBITS); /* raw deflate */
  ASSERT_EQ(hw_inflate(zbuf, zn, HW_INFLATE_DEFLATE, 100, &out, &on), 0);
  ASSERT_STREQ(out, "hello");
  free(out);
  /* 1 MiB of zeros compresses to about 1 KiB: with a 64 KiB limit it is
   * refused, with exactly 1 MiB it passes */
  zn = gz(big, 1 << 20, zbuf, sizeof zbuf, 16 + MAX_WBITS);
  ASSERT_TRUE(zn < 4096);
  ASSERT_EQ(hw_inflate(zbuf, zn, HW_INFLATE_GZIP, 65536, &out, &on), -E2BIG);
  ASSERT_EQ(hw_inflate(zbuf, zn, HW_INFLATE_GZIP, (1 << 20) - 1, &out, &on), -E2BIG);
  ASSERT_EQ(hw_inflate(zbuf, zn, HW_INFLATE_GZIP, 1 << 20, &out, &on), 0);
  ASSERT_EQ(on, 1 << 20);
  free(out);
  ASSERT_EQ(hw_inflate(zbuf, zn / 2, HW_INFLATE_GZIP, 1 << 20, &out, &on), -EINVAL);
  ASSERT_EQ(hw_inflate("not gzip", 8, HW_INFLATE_GZIP, 100, &out, &on), -EINVAL);
  ASSERT_EQ(hw_inflate("", 0, HW_INFLATE_GZIP, 100, &out, &on), -EINVAL);
  free(big);
}

RUN_TESTS("crypto", T(hmac_rfc4231_and_rfc2202), T(github_documented_example),
          T(digests_fips180), T(unknown_algorithm_is_einval),
          T(equal_compares_every_byte), T(random_bytes_differ),
          T(base64_rfc4648), T(hex_both_cases), T(rs256_and_es256_signatures),
          T(inflate_gzip_deflate_and_bombs))
