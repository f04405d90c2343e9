/* http_parse: turns request bytes into hw_http_req_t with llhttp.  Private to
 * http_server.c (not a public API); kept apart so the parser has no I/O: the
 * caller feeds bytes and acts on the result (answer an error, hand a request
 * over, send 100 Continue).
 *
 * Owns: the llhttp parser state, the request being parsed and one spare
 * request whose buffers are reused.  Uses: llhttp.
 *
 * Limits enforced here: header bytes (URL + names + values) over
 * HW_HTTP_MAX_HEADER_BYTES or more than HW_HTTP_MAX_HEADERS headers -> 431,
 * body over max_body (by Content-Length, or as chunks arrive) -> 413, ENOMEM
 * -> 500, body bytes held by all of the server's requests over their bound
 * -> 503, any llhttp error -> 400.
 *
 * Strictness (RFC 9112; a request two parsers could frame differently is a
 * smuggling risk behind a proxy, so it is refused rather than guessed at):
 * llhttp is built with LLHTTP_STRICT_MODE (chunk data must end in CRLF, no
 * space before a header's colon), and on top of it: a version other than
 * HTTP/1.0 or HTTP/1.1 -> 505; an empty header name, obs-fold (a header line
 * continued on the next line), HTTP/1.1 without exactly one Host, more than
 * one Host, Transfer-Encoding on HTTP/1.0 -> 400.  An absolute-form target
 * ("POST http://host/hooks/T HTTP/1.1") is accepted: pub.path is its path.
 */
#ifndef HW_HTTP_PARSE_H
#define HW_HTTP_PARSE_H

#include <stddef.h>

#include "http_server.h"
#include "llhttp.h"

/* A request with the parser's bookkeeping; `pub` first, so a hw_http_req_t *
 * from the handler converts back with a cast. */
typedef struct hw_http_preq_s {
  hw_http_req_t pub;
  hw_http_server_t *srv;   /* set and used by http_server.c only */
  char *str;               /* URL, then names and values, NUL-separated */
  size_t str_len, str_cap;
  struct hw_http_span_s *spans; /* header offsets into str while parsing */
  size_t spans_cap, hdrs_cap;
  char *body_buf;
  size_t body_cap;
  size_t hdr_bytes;        /* against HW_HTTP_MAX_HEADER_BYTES */
  int hstate;              /* which header part llhttp is in */
  int in_trailers;         /* chunked trailers are parsed, then dropped */
  int nhost;               /* Host headers seen */
  int http_minor;          /* 0: HTTP/1.0 wants "Connection: keep-alive" */
  int head;                /* HEAD: the answer carries no body */
  size_t *body_total;      /* the server's count of body bytes held */
  size_t counted;          /* this request's share of it */
} hw_http_preq_t;

typedef struct hw_http_parse_s {
  llhttp_t parser;
  hw_http_preq_t *cur;     /* request being parsed; NULL between requests */
  hw_http_preq_t *spare;   /* recycled request, buffers kept */
  size_t max_body;
  size_t *body_total;      /* body bytes held by every request of the */
  size_t max_body_total;   /* server, and their bound (0: none) -> 503 */
  int err_status;          /* the status to answer after HW_HTTP_PARSE_ERROR */
  int want_continue;       /* the client waits for 100 Continue; the caller
                              sends it and clears this */
  int paused;
  const char *feed;        /* the buffer llhttp is executing, and the last */
  char prev_last;          /* non-blank byte before it: obs-fold detection */
} hw_http_parse_t;

enum {
  HW_HTTP_PARSE_MORE,  /* all bytes used; a request may be under way (cur) */
  HW_HTTP_PARSE_REQ,   /* a request is complete; bytes after it are unused */
  HW_HTTP_PARSE_ERROR  /* answer err_status and close; never feed again */
};

/* body_total (may be NULL) is shared by the server's parsers: body bytes
 * held by all their requests, up to max_body_total (0: no bound). */
void hw_http_parse_init(hw_http_parse_t *p, size_t max_body,
                        size_t *body_total, size_t max_body_total);

/* Feeds len bytes; *used says how many were consumed.  On HW_HTTP_PARSE_REQ
 * *out is the complete request, which the caller now owns (give it back with
 * hw_http_parse_recycle or hw_http_parse_req_free); pub.peer_ip and pub.conn
 * are left for the caller to fill. */
int hw_http_parse_feed(hw_http_parse_t *p, const char *data, size_t len,
                       size_t *used, hw_http_preq_t **out);

/* Takes r back as the spare, so the next request allocates nothing. */
void hw_http_parse_recycle(hw_http_parse_t *p, hw_http_preq_t *r);

/* Drops the request under way, if any (the caller is answering an error). */
void hw_http_parse_abort(hw_http_parse_t *p);

/* Frees the request under way and the spare. */
void hw_http_parse_free(hw_http_parse_t *p);

void hw_http_parse_req_free(hw_http_preq_t *r);

#endif
