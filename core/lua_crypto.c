/* lua_crypto: `hookwork.crypto`, the Lua face of crypto.c and codec.c.
 * Pure functions over strings (no engine state), so the public API may hand
 * them to cycle code as hw.crypto, hw.base64, hw.base64url and hw.hex.
 * Misuse (a wrong argument type, an unknown algorithm) raises; data that
 * does not decode gives nil, message. */
#include "codec.h"
#include "crypto.h"
#include "lua_api.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static int l_crypto_digest(lua_State *L) {
  const char *alg = luaL_checkstring(L, 1);
  size_t n, olen;
  const char *msg = luaL_checklstring(L, 2, &n);
  unsigned char out[HW_CRYPTO_MAX_MD];
  if (hw_crypto_digest(alg, msg, n, out, &olen) != 0)
    return luaL_error(L, "unknown digest algorithm '%s' (md5, sha1, sha256, "
                         "sha384 or sha512)", alg);
  lua_pushlstring(L, (const char *) out, olen);
  return 1;
}

static int l_crypto_hmac(lua_State *L) {
  const char *alg = luaL_checkstring(L, 1);
  size_t klen, mlen, olen;
  const char *key = luaL_checklstring(L, 2, &klen);
  const char *msg = luaL_checklstring(L, 3, &mlen);
  unsigned char out[HW_CRYPTO_MAX_MD];
  if (hw_crypto_hmac(alg, key, klen, msg, mlen, out, &olen) != 0)
    return luaL_error(L, "unknown HMAC algorithm '%s' (md5, sha1, sha256, "
                         "sha384 or sha512)", alg);
  lua_pushlstring(L, (const char *) out, olen);
  return 1;
}

static int l_crypto_equal(lua_State *L) {
  size_t an, bn;
  const char *a = luaL_checklstring(L, 1, &an);
  const char *b = luaL_checklstring(L, 2, &bn);
  lua_pushboolean(L, hw_crypto_equal(a, an, b, bn));
  return 1;
}

static int l_crypto_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_Buffer b;
  char *p;
  luaL_argcheck(L, n >= 0 && n <= 1024 * 1024, 1, "between 0 and 1048576");
  p = luaL_buffinitsize(L, &b, (size_t) n);
  if (hw_crypto_random(p, (size_t) n) != 0)
    return luaL_error(L, "random: no randomness available");
  luaL_pushresultsize(&b, (size_t) n);
  return 1;
}

static int b64enc(lua_State *L, int url) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, HW_B64_LEN(n));
  luaL_pushresultsize(&b, hw_b64_encode(s, n, p, url));
  return 1;
}

static int b64dec(lua_State *L, int url) {
  size_t n, olen;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  unsigned char *p = (unsigned char *) luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
  if (hw_b64_decode(s, n, p, &olen, url) != 0) {
    luaL_pushresultsize(&b, 0);
    lua_pushnil(L);
    lua_pushstring(L, url ? "not valid base64url" : "not valid base64");
    return 2;
  }
  luaL_pushresultsize(&b, olen);
  return 1;
}

static int l_b64_encode(lua_State *L) { return b64enc(L, 0); }
static int l_b64_decode(lua_State *L) { return b64dec(L, 0); }
static int l_b64url_encode(lua_State *L) { return b64enc(L, 1); }
static int l_b64url_decode(lua_State *L) { return b64dec(L, 1); }

static int l_hex_encode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, HW_HEX_LEN(n));
  luaL_pushresultsize(&b, hw_hex_encode(s, n, p));
  return 1;
}

static int l_hex_decode(lua_State *L) {
  size_t n, olen;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  unsigned char *p = (unsigned char *) luaL_buffinitsize(L, &b, n / 2 + 1);
  if (hw_hex_decode(s, n, p, &olen) != 0) {
    luaL_pushresultsize(&b, 0);
    lua_pushnil(L);
    lua_pushstring(L, "not valid hex");
    return 2;
  }
  luaL_pushresultsize(&b, olen);
  return 1;
}

/* pk_verify(alg, pem, msg, sig) -> true | false | nil, message */
static int l_crypto_pk_verify(lua_State *L) {
  const char *alg = luaL_checkstring(L, 1);
  size_t pn, mn, sn;
  const char *pem = luaL_checklstring(L, 2, &pn);
  const char *msg = luaL_checklstring(L, 3, &mn);
  const char *sig = luaL_checklstring(L, 4, &sn);
  char err[128];
  int rc = hw_crypto_pk_verify(alg, pem, pn, msg, mn, sig, sn, err, sizeof err);
  if (rc == 0 || rc == HW_ESIG) {
    lua_pushboolean(L, rc == 0);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, rc == -EINVAL ? err : "out of memory");
  return 2;
}

/* pk_check(alg, pem) -> true | nil, message */
static int l_crypto_pk_check(lua_State *L) {
  const char *alg = luaL_checkstring(L, 1);
  size_t pn;
  const char *pem = luaL_checklstring(L, 2, &pn);
  char err[128];
  if (hw_crypto_pk_check(alg, pem, pn, err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* inflate(body, "gzip"|"deflate", max) -> bytes | nil, "too large" |
 * nil, "corrupt" */
static int l_crypto_inflate(lua_State *L) {
  size_t n, olen;
  const char *in = luaL_checklstring(L, 1, &n);
  const char *kind = luaL_checkstring(L, 2);
  lua_Integer max = luaL_checkinteger(L, 3);
  char *out;
  int k = strcmp(kind, "gzip") == 0      ? HW_INFLATE_GZIP
          : strcmp(kind, "deflate") == 0 ? HW_INFLATE_DEFLATE
                                         : 0;
  int rc;
  if (k == 0)
    return luaL_error(L, "inflate: unknown encoding '%s'", kind);
  luaL_argcheck(L, max >= 0, 3, "must not be negative");
  rc = hw_inflate(in, n, k, (size_t) max, &out, &olen);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, rc == -E2BIG ? "too large" : rc == -ENOMEM ? "out of memory"
                                                                 : "corrupt");
    return 2;
  }
  lua_pushlstring(L, out, olen); /* may raise: free first is not possible, */
  free(out);                     /* but pushlstring only fails on OOM, and */
  return 1;                      /* then the engine is going down anyway */
}

static const luaL_Reg crypto_fns[] = {
  {"digest", l_crypto_digest}, {"hmac", l_crypto_hmac},
  {"equal", l_crypto_equal}, {"random", l_crypto_random},
  {"b64_encode", l_b64_encode}, {"b64_decode", l_b64_decode},
  {"b64url_encode", l_b64url_encode}, {"b64url_decode", l_b64url_decode},
  {"hex_encode", l_hex_encode}, {"hex_decode", l_hex_decode},
  {"pk_verify", l_crypto_pk_verify}, {"pk_check", l_crypto_pk_check},
  {"inflate", l_crypto_inflate}, {NULL, NULL}
};

int hw_lua_crypto_open(lua_State *L) {
  luaL_newlib(L, crypto_fns);
  return 1;
}
