/* http_parse.c: request parsing for http_server.c (see http_parse.h).
 *
 * Owns: the request under way and a spare one.  Uses: llhttp.
 *
 * llhttp hands URL and header bytes over in pieces that can span reads, so
 * they are copied into one growable arena (req.str) and located by offsets;
 * the public pointers are set only once the request is complete, after the
 * last realloc.  on_message_complete returns HPE_PAUSED, so each feed returns
 * at most one request and the caller runs the handler outside llhttp.
 */
#include "http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEEP_BODY_CAP (64 * 1024) /* bigger body buffers are not recycled */

struct hw_http_span_s { /* one header, as offsets into req.str */
  size_t name, value;
};

enum { H_NONE, H_FIELD, H_VALUE };

/* The capacity to grow to for `need` items: doubling, so appends stay linear,
 * but never beyond `max` (when max >= need). */
static size_t new_cap(size_t cap, size_t need, size_t max) {
  size_t n = cap ? cap : 16;

  while (n < need)
    n *= 2;
  return n > max && max >= need ? max : n;
}

/* Makes *buf hold at least `need` bytes; 0 or -1 (ENOMEM). */
static int grow(char **buf, size_t *cap, size_t need, size_t max) {
  size_t n;
  char *p;

  if (need <= *cap)
    return 0;
  n = new_cap(*cap, need, max);
  if ((p = realloc(*buf, n)) == NULL)
    return -1;
  *buf = p;
  *cap = n;
  return 0;
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t'; }

/* ---- requests ---- */

/* Gives back the request's share of the server's body bytes. */
static void uncount(hw_http_preq_t *r) {
  if (r->body_total != NULL)
    *r->body_total -= r->counted;
  r->counted = 0;
}

void hw_http_parse_req_free(hw_http_preq_t *r) {
  uncount(r);
  free(r->str);
  free(r->spans);
  free(r->pub.headers);
  free(r->body_buf);
  free(r);
}

/* Takes the spare request or allocates one; NULL on ENOMEM. */
static hw_http_preq_t *req_new(hw_http_parse_t *p) {
  hw_http_preq_t *r = p->spare;

  if (r == NULL && (r = calloc(1, sizeof *r)) == NULL)
    return NULL;
  p->spare = NULL;
  /* The arena always exists, so query and body can point into it. */
  if (grow(&r->str, &r->str_cap, 256, SIZE_MAX) < 0) {
    hw_http_parse_req_free(r);
    return NULL;
  }
  r->str_len = r->hdr_bytes = 0;
  r->hstate = H_NONE;
  r->in_trailers = 0;
  r->nhost = 0;
  r->pub.nheaders = 0;
  r->pub.body_len = 0;
  r->pub.data = NULL;
  r->pub.conn = NULL;
  r->body_total = p->body_total;
  r->counted = 0;
  return r;
}

void hw_http_parse_recycle(hw_http_parse_t *p, hw_http_preq_t *r) {
  uncount(r);
  if (p->spare != NULL) {
    hw_http_parse_req_free(r);
    return;
  }
  if (r->body_cap > KEEP_BODY_CAP) { /* don't pin a big body per conn */
    free(r->body_buf);
    r->body_buf = NULL;
    r->body_cap = 0;
  }
  p->spare = r;
}

static int str_put(hw_http_preq_t *r, const char *at, size_t len) {
  if (grow(&r->str, &r->str_cap, r->str_len + len + 1, SIZE_MAX) < 0)
    return -1;
  memcpy(r->str + r->str_len, at, len);
  r->str_len += len;
  return 0;
}

static int str_nul(hw_http_preq_t *r) {
  if (str_put(r, "", 0) < 0)
    return -1;
  r->str[r->str_len++] = '\0';
  return 0;
}

/* The path of an absolute-form target ("http://host:1/a?b" -> "/a?b"),
 * in place: the scheme and authority are dropped (RFC 9112 3.2.2; the
 * authority replaces Host, which only routing would use).  Returns url
 * itself for origin-form. */
static char *origin_form(char *url) {
  char *a;

  if (strncasecmp(url, "http://", 7) == 0)
    a = url + 7;
  else if (strncasecmp(url, "https://", 8) == 0)
    a = url + 8;
  else
    return url;
  a += strcspn(a, "/?#");
  if (*a == '/')
    return a;
  a[-1] = '/'; /* no path: "/" (the byte before is authority or "//") */
  return a - 1;
}

/* Turns the arena offsets into the public pointers; 0 or -1 (ENOMEM). */
static int req_finish(hw_http_preq_t *r, llhttp_t *ll) {
  hw_http_req_t *p = &r->pub;
  char *q;
  int i;

  if (str_nul(r) < 0)
    return -1;
  if ((size_t) p->nheaders > r->hdrs_cap) {
    hw_http_header_t *h = realloc(p->headers, HW_HTTP_MAX_HEADERS * sizeof *h);
    if (h == NULL)
      return -1;
    p->headers = h; /* sized once for the most a request may have */
    r->hdrs_cap = HW_HTTP_MAX_HEADERS;
  }
  p->path = origin_form(r->str); /* the URL comes first in the arena */
  if ((q = strchr(p->path, '?')) != NULL)
    *q++ = '\0';
  p->query = q ? q : p->path + strlen(p->path);
  for (i = 0; i < p->nheaders; i++) {
    p->headers[i].name = r->str + r->spans[i].name;
    p->headers[i].value = r->str + r->spans[i].value;
  }
  if (r->body_buf != NULL)
    r->body_buf[p->body_len] = '\0';
  /* Without a body buffer, point at the arena's final NUL. */
  p->body = r->body_buf ? r->body_buf : r->str + r->str_len - 1;
  p->method = llhttp_method_name((llhttp_method_t) ll->method);
  /* No upgrades: such a request is answered, then the connection closes. */
  p->keep_alive = llhttp_should_keep_alive(ll) && !ll->upgrade;
  return 0;
}

/* ---- llhttp callbacks ---- */

/* Records the status to answer with and stops llhttp. */
static int cb_fail(hw_http_parse_t *p, int status) {
  p->err_status = status;
  return HPE_USER;
}

/* Appends a URL or header piece, counting it against the header cap. */
static int cb_take(hw_http_parse_t *p, const char *at, size_t len) {
  hw_http_preq_t *r = p->cur;

  r->hdr_bytes += len;
  if (r->hdr_bytes > HW_HTTP_MAX_HEADER_BYTES)
    return cb_fail(p, 431);
  return str_put(r, at, len) < 0 ? cb_fail(p, 500) : 0;
}

static int on_message_begin(llhttp_t *ll) {
  hw_http_parse_t *p = ll->data;

  p->cur = req_new(p);
  return p->cur == NULL ? cb_fail(p, 500) : 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len) {
  return cb_take(ll->data, at, len);
}

/* Ends the URL or a header name. */
static int on_span_complete(llhttp_t *ll) {
  hw_http_parse_t *p = ll->data;

  if (p->cur->in_trailers)
    return 0;
  return str_nul(p->cur) < 0 ? cb_fail(p, 500) : 0;
}

/* Ends a header name: an empty one (": v") is not a header. */
static int on_field_complete(llhttp_t *ll) {
  hw_http_parse_t *p = ll->data;
  hw_http_preq_t *r = p->cur;

  if (r->in_trailers)
    return 0;
  if (r->hstate != H_FIELD || r->str_len == r->spans[r->pub.nheaders].name)
    return cb_fail(p, 400);
  return on_span_complete(ll);
}

/* Starts a header: checks the count and makes room for its offsets. */
static int header_start(hw_http_parse_t *p, hw_http_preq_t *r) {
  struct hw_http_span_s *sp;
  size_t n = r->spans_cap;

  if (r->pub.nheaders >= HW_HTTP_MAX_HEADERS)
    return cb_fail(p, 431);
  if ((size_t) r->pub.nheaders == n) {
    n = new_cap(n, n + 1, HW_HTTP_MAX_HEADERS);
    if ((sp = realloc(r->spans, n * sizeof *sp)) == NULL)
      return cb_fail(p, 500);
    r->spans = sp;
    r->spans_cap = n;
  }
  r->spans[r->pub.nheaders].name = r->str_len;
  r->hstate = H_FIELD;
  return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len) {
  hw_http_parse_t *p = ll->data;
  hw_http_preq_t *r = p->cur;
  size_t i, start = r->str_len;
  int rc;

  if (r->in_trailers)
    return 0;
  if (r->hstate != H_FIELD && (rc = header_start(p, r)) != 0)
    return rc;
  if ((rc = cb_take(p, at, len)) != 0)
    return rc;
  for (i = start; i < r->str_len; i++)
    if (r->str[i] >= 'A' && r->str[i] <= 'Z')
      r->str[i] = (char) (r->str[i] + ('a' - 'A'));
  return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len) {
  hw_http_parse_t *p = ll->data;
  hw_http_preq_t *r = p->cur;
  const char *b = at;
  char before;

  while (b > p->feed && is_blank(b[-1]))
    b--;
  before = b > p->feed ? b[-1] : p->prev_last;
  /* A value piece right after a line end (blanks aside) is obs-fold, which
   * llhttp joins but a proxy may not: refused (RFC 9112 5.2 allows 400). */
  if (before == '\n')
    return cb_fail(p, 400);
  if (r->in_trailers)
    return 0;
  if (r->hstate == H_NONE)
    return cb_fail(p, 400); /* a value with no name */
  if (r->hstate != H_VALUE) {
    r->spans[r->pub.nheaders].value = r->str_len;
    r->hstate = H_VALUE;
  }
  return cb_take(p, at, len);
}

/* Trims the value's blanks and counts the header as complete. */
static int on_header_value_complete(llhttp_t *ll) {
  hw_http_parse_t *p = ll->data;
  hw_http_preq_t *r = p->cur;
  struct hw_http_span_s *s;

  if (r->in_trailers)
    return 0;
  if (r->hstate == H_NONE)
    return cb_fail(p, 400);
  s = &r->spans[r->pub.nheaders];
  if (r->hstate != H_VALUE) /* an empty value may come without on_value */
    s->value = r->str_len;
  while (s->value < r->str_len && is_blank(r->str[s->value]))
    s->value++;
  while (r->str_len > s->value && is_blank(r->str[r->str_len - 1]))
    r->str_len--;
  if (str_nul(r) < 0)
    return cb_fail(p, 500);
  if (strcmp(r->str + s->name, "host") == 0)
    r->nhost++;
  r->pub.nheaders++;
  r->hstate = H_NONE;
  return 0;
}

static const char *cur_header(const hw_http_preq_t *r, const char *name) {
  int i;

  for (i = 0; i < r->pub.nheaders; i++)
    if (strcmp(r->str + r->spans[i].name, name) == 0)
      return r->str + r->spans[i].value;
  return NULL;
}

static int on_headers_complete(llhttp_t *ll) {
  hw_http_parse_t *p = ll->data;
  hw_http_preq_t *r = p->cur;
  const char *expect = cur_header(r, "expect");
  int has_cl = (ll->flags & F_CONTENT_LENGTH) != 0;
  size_t cl;

  r->in_trailers = 1;
  r->http_minor = ll->http_minor;
  r->head = ll->method == HTTP_HEAD;
  if (ll->http_major != 1 || ll->http_minor > 1)
    return cb_fail(p, 505); /* HTTP/0.9 and HTTP/2.0 request lines too */
  if (r->nhost > 1 || (ll->http_minor == 1 && r->nhost == 0))
    return cb_fail(p, 400);
  if (ll->http_minor == 0 && (ll->flags & F_TRANSFER_ENCODING))
    return cb_fail(p, 400); /* RFC 9112 6.1: framing is faulty */
  if (has_cl && ll->content_length > p->max_body)
    return cb_fail(p, 413); /* before any 100 Continue or body bytes */
  cl = has_cl ? (size_t) ll->content_length : 0;
  if (cl > 0 && grow(&r->body_buf, &r->body_cap,
                     (cl < KEEP_BODY_CAP ? cl : KEEP_BODY_CAP) + 1,
                     SIZE_MAX) < 0)
    return cb_fail(p, 500);
  if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
      ll->http_major == 1 && ll->http_minor >= 1 &&
      (cl > 0 || (ll->flags & F_CHUNKED)))
    p->want_continue = 1;
  return 0;
}

static int on_body(llhttp_t *ll, const char *at, size_t len) {
  hw_http_parse_t *p = ll->data;
  hw_http_preq_t *r = p->cur;

  if (len > p->max_body - r->pub.body_len) /* chunked bodies end up here */
    return cb_fail(p, 413);
  if (p->max_body_total > 0 && len > p->max_body_total - *p->body_total)
    return cb_fail(p, 503); /* every connection's bodies together */
  if (grow(&r->body_buf, &r->body_cap, r->pub.body_len + len + 1,
           p->max_body + 1) < 0)
    return cb_fail(p, 500);
  memcpy(r->body_buf + r->pub.body_len, at, len);
  r->pub.body_len += len;
  if (r->body_total != NULL) {
    *r->body_total += len;
    r->counted += len;
  }
  return 0;
}

/* Pauses llhttp so the request goes to the handler outside llhttp_execute. */
static int on_message_complete(llhttp_t *ll) {
  hw_http_parse_t *p = ll->data;

  return req_finish(p->cur, ll) < 0 ? cb_fail(p, 500) : HPE_PAUSED;
}

static const llhttp_settings_t settings = {
  .on_message_begin = on_message_begin,
  .on_url = on_url,
  .on_url_complete = on_span_complete,
  .on_header_field = on_header_field,
  .on_header_field_complete = on_field_complete,
  .on_header_value = on_header_value,
  .on_header_value_complete = on_header_value_complete,
  .on_headers_complete = on_headers_complete,
  .on_body = on_body,
  .on_message_complete = on_message_complete,
};

/* ---- feeding ---- */

void hw_http_parse_init(hw_http_parse_t *p, size_t max_body,
                        size_t *body_total, size_t max_body_total) {
  memset(p, 0, sizeof *p);
  llhttp_init(&p->parser, HTTP_REQUEST, &settings);
  p->parser.data = p;
  p->max_body = max_body;
  p->body_total = body_total;
  p->max_body_total = body_total != NULL ? max_body_total : 0;
}

/* Remembers the last non-blank byte of what llhttp consumed. */
static void note_last(hw_http_parse_t *p, const char *data, size_t n) {
  while (n > 0 && is_blank(data[n - 1]))
    n--;
  if (n > 0)
    p->prev_last = data[n - 1];
}

int hw_http_parse_feed(hw_http_parse_t *p, const char *data, size_t len,
                       size_t *used, hw_http_preq_t **out) {
  llhttp_errno_t err;

  *used = 0;
  *out = NULL;
  if (p->paused) { /* the previous request has been answered */
    llhttp_resume(&p->parser);
    p->paused = 0;
  }
  p->feed = data;
  err = llhttp_execute(&p->parser, data, len);
  if (err == HPE_OK) {
    *used = len;
    note_last(p, data, len);
    return HW_HTTP_PARSE_MORE;
  }
  if (err != HPE_PAUSED || p->cur == NULL) {
    if (p->err_status == 0)
      p->err_status = 400;
    return HW_HTTP_PARSE_ERROR;
  }
  *used = (size_t) (llhttp_get_error_pos(&p->parser) - data);
  note_last(p, data, *used);
  p->paused = 1;
  *out = p->cur;
  p->cur = NULL;
  return HW_HTTP_PARSE_REQ;
}

void hw_http_parse_abort(hw_http_parse_t *p) {
  if (p->cur != NULL)
    hw_http_parse_recycle(p, p->cur);
  p->cur = NULL;
}

void hw_http_parse_free(hw_http_parse_t *p) {
  if (p->cur != NULL)
    hw_http_parse_req_free(p->cur);
  if (p->spare != NULL)
    hw_http_parse_req_free(p->spare);
  p->cur = p->spare = NULL;
}
