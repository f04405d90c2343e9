/* fuzz_http: the HTTP request path (core/http_parse.c over llhttp, strict
 * mode): bytes -> complete requests, the way http_server.c feeds them.
 *
 * The input (after its first byte, which seeds the cut points) is parsed
 * twice: in one read, and cut into pieces, so URL, header and body pieces
 * that span reads are exercised.  Both must give the same requests and the
 * same final error: a parse that depends on how bytes arrive is a desync.
 * Every complete request is checked: header names lower-case and
 * non-empty, no CR/LF in names or values, body within max_body, path
 * non-empty; after the last request the body account is back at zero. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

#define MAX_BODY 4096
#define MAX_TOTAL 16384

typedef struct {
  uint64_t h;  /* FNV-1a over every request's parts, in order */
  int nreq, err;
} digest_t;

static void mix(digest_t *d, const void *p, size_t n) {
  const unsigned char *b = p;
  size_t i;

  for (i = 0; i < n; i++)
    d->h = (d->h ^ b[i]) * 1099511628211ull;
  d->h = (d->h ^ 0xff) * 1099511628211ull; /* separator */
}

static void take(digest_t *d, const hw_http_req_t *r) {
  int i;

  assert(r->method != NULL && r->path != NULL && r->query != NULL);
  assert(r->path[0] != '\0');
  assert(r->body_len <= MAX_BODY);
  assert(r->nheaders >= 0 && r->nheaders <= HW_HTTP_MAX_HEADERS);
  mix(d, r->method, strlen(r->method));
  mix(d, r->path, strlen(r->path));
  mix(d, r->query, strlen(r->query));
  for (i = 0; i < r->nheaders; i++) {
    const char *n = r->headers[i].name, *v = r->headers[i].value;
    assert(n[0] != '\0'); /* an empty name is a 400 */
    mix(d, n, strlen(n));
    mix(d, v, strlen(v));
    for (; *n; n++)
      assert(!(*n >= 'A' && *n <= 'Z') && *n != '\r' && *n != '\n' &&
             *n != ':' && *n != ' ');
    assert(strpbrk(v, "\r\n") == NULL);
  }
  mix(d, r->body, r->body_len);
  mix(d, &r->keep_alive, sizeof r->keep_alive);
  d->nreq++;
}

/* Parses data in pieces (seed 0: one read) the way conn_parse does. */
static void parse(const uint8_t *data, size_t size, unsigned seed,
                  digest_t *d) {
  hw_http_parse_t p;
  size_t total = 0, off = 0, end = 0, used;
  int rc = HW_HTTP_PARSE_MORE;

  memset(d, 0, sizeof *d);
  d->h = 1469598103934665603ull;
  hw_http_parse_init(&p, MAX_BODY, &total, MAX_TOTAL);
  while (off < size && rc != HW_HTTP_PARSE_ERROR) {
    hw_http_preq_t *r;
    if (off >= end) { /* the next "read" */
      seed = seed * 1103515245u + 12345u;
      end = seed == 0 ? size : off + 1 + (seed >> 8) % 48;
      if (end > size)
        end = size;
    }
    rc = hw_http_parse_feed(&p, (const char *) data + off, end - off, &used,
                            &r);
    assert(used <= end - off);
    off += used;
    if (rc == HW_HTTP_PARSE_REQ) {
      take(d, &r->pub);
      hw_http_parse_recycle(&p, r);
    } else if (rc == HW_HTTP_PARSE_ERROR) {
      assert(p.err_status >= 400 && p.err_status <= 505);
      d->err = p.err_status;
      hw_http_parse_abort(&p);
    }
  }
  if (rc != HW_HTTP_PARSE_ERROR && p.cur != NULL)
    d->err = -1; /* a request under way when the bytes ran out */
  hw_http_parse_free(&p);
  assert(total == 0); /* every request gave its body bytes back */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  digest_t whole, cut;

  if (size == 0)
    return 0;
  parse(data + 1, size - 1, 0, &whole);
  parse(data + 1, size - 1, data[0] | 1u, &cut);
  if (whole.nreq != cut.nreq || whole.h != cut.h ||
      (whole.err > 0) != (cut.err > 0) || (whole.err < 0) != (cut.err < 0)) {
    fprintf(stderr, "one read: %d requests, error %d; in pieces: %d, %d\n",
            whole.nreq, whole.err, cut.nreq, cut.err);
    abort();
  }
  return 0;
}
