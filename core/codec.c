/* codec: Base64, Base64url, hex and gzip/deflate decoding with a size
 * limit (see codec.h). */
#include "codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const char b64std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t hw_b64_encode(const void *in, size_t n, char *out, int url) {
  const unsigned char *p = in;
  const char *abc = url ? b64url : b64std;
  size_t i, j = 0;
  for (i = 0; i + 2 < n; i += 3) {
    unsigned v = (unsigned) p[i] << 16 | (unsigned) p[i + 1] << 8 | p[i + 2];
    out[j++] = abc[(v >> 18) & 63];
    out[j++] = abc[(v >> 12) & 63];
    out[j++] = abc[(v >> 6) & 63];
    out[j++] = abc[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned) p[i] << 16 | (i + 1 < n ? (unsigned) p[i + 1] << 8 : 0);
    out[j++] = abc[(v >> 18) & 63];
    out[j++] = abc[(v >> 12) & 63];
    if (i + 1 < n)
      out[j++] = abc[(v >> 6) & 63];
    else if (!url)
      out[j++] = '=';
    if (!url)
      out[j++] = '=';
  }
  out[j] = '\0';
  return j;
}

static int b64_val(int c, int url) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == (url ? '-' : '+'))
    return 62;
  if (c == (url ? '_' : '/'))
    return 63;
  return -1;
}

int hw_b64_decode(const char *in, size_t n, unsigned char *out,
                  size_t *outlen, int url) {
  size_t i, j = 0, pad = 0;
  unsigned acc = 0;
  int bits = 0;
  while (n > 0 && in[n - 1] == '=' && pad < 2) { /* optional padding */
    n--;
    pad++;
  }
  if (n % 4 == 1 || (pad > 0 && (n + pad) % 4 != 0))
    return -EINVAL;
  for (i = 0; i < n; i++) {
    int v = b64_val((unsigned char) in[i], url);
    if (v < 0)
      return -EINVAL;
    acc = (acc << 6) | (unsigned) v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[j++] = (unsigned char) (acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  *outlen = j;
  return 0;
}

size_t hw_hex_encode(const void *in, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  const unsigned char *p = in;
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
  return 2 * n;
}

int hw_hex_val(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int hw_hex_decode(const char *in, size_t n, unsigned char *out,
                  size_t *outlen) {
  size_t i;
  if (n % 2 != 0)
    return -EINVAL;
  for (i = 0; i < n; i += 2) {
    int hi = hw_hex_val((unsigned char) in[i]), lo = hw_hex_val((unsigned char) in[i + 1]);
    if (hi < 0 || lo < 0)
      return -EINVAL;
    out[i / 2] = (unsigned char) (hi << 4 | lo);
  }
  *outlen = n / 2;
  return 0;
}

/* One inflate pass with zlib window bits wbits; see hw_inflate. */
static int inflate_with(const void *in, size_t n, int wbits, size_t max,
                        char **out, size_t *outlen) {
  z_stream z;
  char *buf = NULL, *nb;
  size_t cap = 0, len = 0;
  int zr, rc = 0;

  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, wbits) != Z_OK)
    return -ENOMEM;
  z.next_in = (Bytef *) in;
  z.avail_in = 0;
  for (;;) {
    if (z.avail_in == 0 && n > 0) { /* feed in chunks: avail_in is a uInt */
      size_t take = n > (1u << 30) ? (1u << 30) : n;
      z.avail_in = (uInt) take;
      n -= take;
    }
    if (len == cap) {
      size_t ncap = cap ? cap * 2 : 16384;
      if (ncap > max + 1)
        ncap = max + 1; /* one byte past max proves the body is too big */
      if (ncap <= cap) {
        rc = -E2BIG;
        break;
      }
      nb = realloc(buf, ncap + 1);
      if (nb == NULL) {
        rc = -ENOMEM;
        break;
      }
      buf = nb;
      cap = ncap;
    }
    z.next_out = (Bytef *) buf + len;
    z.avail_out = (uInt) (cap - len);
    zr = inflate(&z, Z_NO_FLUSH);
    len = cap - z.avail_out;
    if (len > max) {
      rc = -E2BIG;
      break;
    }
    if (zr == Z_STREAM_END) {
      /* gzip allows several members back to back */
      if (wbits > 16 && (z.avail_in > 0 || n > 0)) {
        if (inflateReset(&z) != Z_OK) {
          rc = -EINVAL;
          break;
        }
        continue;
      }
      break;
    }
    if (zr == Z_BUF_ERROR && z.avail_in == 0 && n == 0 && z.avail_out > 0) {
      rc = -EINVAL; /* truncated */
      break;
    }
    if (zr != Z_OK && zr != Z_BUF_ERROR) {
      rc = zr == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
      break;
    }
  }
  inflateEnd(&z);
  if (rc != 0) {
    free(buf);
    return rc;
  }
  if (buf == NULL && (buf = malloc(1)) == NULL)
    return -ENOMEM;
  buf[len] = '\0';
  *out = buf;
  *outlen = len;
  return 0;
}

int hw_inflate(const void *in, size_t n, int kind, size_t max, char **out,
               size_t *outlen) {
  int rc;
  if (kind == HW_INFLATE_GZIP)
    return inflate_with(in, n, 16 + MAX_WBITS, max, out, outlen);
  if (kind != HW_INFLATE_DEFLATE)
    return -EINVAL;
  /* HTTP's "deflate" is the zlib format, but many senders send raw
   * deflate: try zlib first, then raw. */
  rc = inflate_with(in, n, MAX_WBITS, max, out, outlen);
  if (rc == -EINVAL)
    rc = inflate_with(in, n, -MAX_WBITS, max, out, outlen);
  return rc;
}
