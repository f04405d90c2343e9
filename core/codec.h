/* codec: byte encodings (Base64, Base64url, hex) and Content-Encoding
 * decoding (gzip, deflate) with a hard limit on the decoded size.
 *
 * Owns: the buffers it returns (the caller frees them with free()).
 * Uses: zlib.
 *
 * Functions return 0 or a negative errno-style code. */
#ifndef HW_CODEC_H
#define HW_CODEC_H

#include <stddef.h>

/* Room needed to encode n bytes (terminating NUL included). */
#define HW_B64_LEN(n) (((n) + 2) / 3 * 4 + 1)
#define HW_HEX_LEN(n) ((n) * 2 + 1)

/* Base64 of in into out (NUL-terminated); url selects the URL-safe
 * alphabet without padding (RFC 4648 section 5).  Returns the length. */
size_t hw_b64_encode(const void *in, size_t n, char *out, int url);

/* Decodes Base64 (url = 0: standard alphabet, padding optional) or
 * Base64url (url = 1: '-' and '_', padding optional).  out must hold
 * n / 4 * 3 + 3 bytes.  -EINVAL on a character outside the alphabet or a
 * bad length. */
int hw_b64_decode(const char *in, size_t n, unsigned char *out,
                  size_t *outlen, int url);

size_t hw_hex_encode(const void *in, size_t n, char *out);
/* The value of one hex digit (either case), or -1. */
int hw_hex_val(int c);
/* Upper or lower case; -EINVAL on an odd length or a non-hex digit. */
int hw_hex_decode(const char *in, size_t n, unsigned char *out,
                  size_t *outlen);

#define HW_INFLATE_GZIP 1
#define HW_INFLATE_DEFLATE 2

/* Decodes a gzip or deflate body (deflate: zlib-wrapped, or raw as some
 * senders send it).  Stops as soon as the output would pass max bytes:
 * -E2BIG (a zip bomb costs at most max bytes of memory).  -EINVAL on a
 * corrupt or truncated stream, -ENOMEM.  On success *out (NUL-terminated,
 * malloc'd) and *outlen. */
int hw_inflate(const void *in, size_t n, int kind, size_t max, char **out,
               size_t *outlen);

#endif
