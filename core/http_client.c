/* http_client.c: outbound HTTP for hookwork on libcurl's multi interface,
 * driven by the one libuv loop the way curl's docs/examples/multi-uv.c is:
 * curl says which sockets to watch (one uv_poll_t each, owned by a sock_t and
 * freed in its close callback) and when to wake it (one uv_timer_t); we call
 * curl_multi_socket_action and then drain curl_multi_info_read.  No threads
 * of ours, nothing blocks.
 *
 * Watchers stay armed (issue 14: fewer syscalls per call): uv_poll_start is
 * called only when the events curl wants change, and a socket of ours that
 * curl stops watching because its connection went back to the cache stays
 * watched for "readable" (parked) instead of being closed and re-added when
 * the next call reuses it.  That is safe because every connection socket is
 * opened and closed by our own callbacks (on_open_socket/on_close_socket),
 * so a parked watcher is always closed before its descriptor is; a parked
 * socket that turns readable (the peer closed it) is left to curl's own
 * liveness check and stops being watched.  With keep-alive through the
 * multi handle's connection cache (CURLMOPT_MAXCONNECTS, see
 * hw_hc_set_limits), a call to a host already talked to costs no socket,
 * connect or epoll_ctl.
 *
 * A transfer (hw_hc_xfer_t) wraps one pooled easy handle and its reusable
 * buffers, so a steady stream of requests allocates little.  Retry waits share
 * one client timer armed for the nearest deadline (a sorted list), and
 * cancellations are delivered from a zero-delay timer, so a done callback
 * never runs inside hw_hc_start or hw_hc_close.
 *
 * Uses: libuv, libcurl (>= 7.85).  Owns: the multi handle, its connection
 * cache and every transfer; the socket watchers, curl's timer and the
 * callbacks curl calls are in http_client_io.c (shared structs in
 * http_client_int.h).
 */
#include "http_client.h"
#include "http_client_int.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

static int curl_ready;             /* curl_global_init done: the only static */

static void deliver(hw_hc_xfer_t *x, int err);
/* ---- small helpers ------------------------------------------------------ */

static void xl_insert_before(xlist_t *l, hw_hc_xfer_t *pos, hw_hc_xfer_t *x) {
  x->next = pos;
  x->prev = pos ? pos->prev : l->tail;
  if (x->prev) x->prev->next = x; else l->head = x;
  if (pos) pos->prev = x; else l->tail = x;
}

#define xl_push(l, x) xl_insert_before((l), NULL, (x))

static void xl_unlink(xlist_t *l, hw_hc_xfer_t *x) {
  if (x->prev) x->prev->next = x->next; else l->head = x->next;
  if (x->next) x->next->prev = x->prev; else l->tail = x->prev;
  x->prev = x->next = NULL;
}

/* Makes room for extra bytes plus a NUL, growing geometrically so a body
 * arriving in many small writes costs O(log n) reallocations. */
int hw_hc__buf_reserve(buf_t *b, size_t extra) {
  size_t need, cap;
  char *p;

  if (extra > SIZE_MAX - b->len - 1) return UV_ENOMEM;
  need = b->len + extra + 1;
  if (need <= b->cap) return 0;
  cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  p = realloc(b->p, cap);
  if (p == NULL) return UV_ENOMEM;
  b->p = p;
  b->cap = cap;
  return 0;
}

/* Appends n bytes and a NUL; with count_nul the NUL is part of the content
 * (string tables), otherwise it only terminates it. */
int hw_hc__buf_add(buf_t *b, const char *s, size_t n, int count_nul) {
  if (hw_hc__buf_reserve(b, n) < 0) return UV_ENOMEM;
  if (n > 0) memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  if (count_nul) b->len++;
  return 0;
}

/* Drops buffers that grew large, so one big response does not pin memory in
 * the pool forever. */
static void buf_trim(buf_t *b) {
  b->len = 0;
  if (b->cap <= KEEP_BUF_MAX) return;
  free(b->p);
  b->p = NULL;
  b->cap = 0;
}

/* Returns array p grown to hold n items (doubling, at least 8), or NULL
 * with p untouched. */
void *hw_hc__grow(void *p, int *cap, int n, size_t size) {
  int c = *cap ? *cap : 8;

  if (n <= *cap) return p;
  while (c < n) c *= 2;
  if ((p = realloc(p, (size_t) c * size)) != NULL) *cap = c;
  return p;
}

#define SINCE(t0) ((double) (uv_hrtime() - (t0)) / 1e9)

/* 64-bit LCG, high bits: per-client jitter without global rand() state. */
static uint64_t rng_next(hw_hc_t *hc) {
  hc->rng = hc->rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return hc->rng >> 33;
}

/* ---- errors and retry policy -------------------------------------------- */

static int curl_to_uv(CURLcode rc, long oserr) {
  switch (rc) {
  case CURLE_COULDNT_CONNECT:
    /* unix UV_E* codes are -errno: keeps refused and unreachable apart */
    return oserr > 0 ? (int) -oserr : UV_ECONNREFUSED;
  case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY:
    return UV_EAI_NONAME;
  case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CRL_BADFILE:
    return UV_EPROTO;
  case CURLE_URL_MALFORMAT: case CURLE_UNSUPPORTED_PROTOCOL: return UV_EINVAL;
  case CURLE_OUT_OF_MEMORY: return UV_ENOMEM;
  case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING:
    return UV_ECONNRESET;
  default: return UV_EIO;
  }
}

/* Turns a failed attempt into a negative code and the cause text. */
static int attempt_error(hw_hc_xfer_t *x, CURLcode rc, char *out, size_t n) {
  long oserr = 0;

  if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
    snprintf(out, n, "response larger than %zu bytes", x->max_response);
    return UV_EMSGSIZE;
  }
  if (x->oom) {
    snprintf(out, n, "out of memory");
    return UV_ENOMEM;
  }
  if (x->mem_full) {
    snprintf(out, n, "responses being received hold over %zu bytes",
             x->hc->max_buffered);
    return UV_ENOMEM;
  }
  if (x->denied && rc == CURLE_COULDNT_CONNECT) {
    snprintf(out, n, "refused by the outbound policy: %s", x->why);
    return UV_EACCES;
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    snprintf(out, n, "timeout after %ld ms", x->timeout_ms);
    return UV_ETIMEDOUT;
  }
  snprintf(out, n, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
  /* curl 7.88 says only "Couldn't connect to server": name the errno too */
  curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &oserr);
  if (rc == CURLE_COULDNT_CONNECT && oserr > 0 &&
      strstr(out, strerror((int) oserr)) == NULL)
    snprintf(out + strlen(out), n - strlen(out), " (%s)",
             strerror((int) oserr));
  return curl_to_uv(rc, oserr);
}

static int retryable(CURLcode rc, long status) {
  if (rc == CURLE_OK) return status == 429 || (status >= 500 && status <= 599);
  return rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_CONNECT ||
         rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SEND_ERROR ||
         rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING;
}

/* Retry-After in delta-seconds (capped), or -1 when absent or a date. */
static long retry_after(const hw_hc_xfer_t *x) {
  const char *p = x->harena.p, *v;
  char *end;
  long s;
  int i;

  for (i = 0; i < x->nhdr; i++) {
    v = p + strlen(p) + 1;
    if (strcmp(p, "retry-after") == 0 && isdigit((unsigned char) *v)) {
      s = strtol(v, &end, 10);
      if (*end != '\0') return -1;
      return s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : s;
    }
    p = v + strlen(v) + 1;
  }
  return -1;
}

/* Milliseconds to wait before the next attempt: Retry-After when the server
 * sent one, else 100 ms * 2^n capped at 10 s, with +-25% jitter so clients
 * that failed together do not retry together. */
static uint64_t retry_delay(hw_hc_xfer_t *x) {
  long ra = x->err == 0 ? retry_after(x) : -1;
  int n = x->natt - 1;
  uint64_t ms;

  if (ra >= 0) return (uint64_t) ra * 1000;
  ms = n >= 7 ? BACKOFF_MAX_MS : (uint64_t) BACKOFF_BASE_MS << n;
  if (ms > BACKOFF_MAX_MS) ms = BACKOFF_MAX_MS;
  return ms * (750 + rng_next(x->hc) % 501) / 1000;
}

/* ---- transfer lifecycle ------------------------------------------------- */

static void xfer_free(hw_hc_xfer_t *x) {
  curl_slist_free_all(x->hdrs);
  curl_slist_free_all(x->hdrs_pub);
  curl_easy_cleanup(x->easy);
  free(x->strs.p);
  free(x->body.p);
  free(x->harena.p);
  free(x->hvec);
  free(x->att);
  free(x);
}

/* A transfer from the pool (LIFO: the warmest one), or a new one. */
static hw_hc_xfer_t *xfer_get(hw_hc_t *hc) {
  hw_hc_xfer_t *x = hc->pool.tail;

  if (x != NULL) {
    xl_unlink(&hc->pool, x);
    hc->npool--;
    return x;
  }
  if ((x = calloc(1, sizeof *x)) == NULL) return NULL;
  if ((x->easy = curl_easy_init()) == NULL) {
    free(x);
    return NULL;
  }
  x->hc = hc;
  return x;
}

/* Returns a finished (or never started) transfer to the pool.  The reset
 * drops options and the copied request body but keeps the easy handle. */
static void xfer_recycle(hw_hc_xfer_t *x) {
  hw_hc_t *hc = x->hc;

  curl_easy_reset(x->easy);
  curl_slist_free_all(x->hdrs);
  curl_slist_free_all(x->hdrs_pub);
  x->hdrs = x->hdrs_pub = NULL;
  hc->buffered -= x->body.len;
  buf_trim(&x->strs);
  buf_trim(&x->body);
  buf_trim(&x->harena);
  x->nhdr = 0;
  x->state = X_IDLE;
  if (hc->npool >= POOL_MAX) {
    xfer_free(x);
    return;
  }
  xl_push(&hc->pool, x);
  hc->npool++;
}

/* Rejects what could smuggle extra lines into the request. */
static int req_check(const hw_hc_request_t *r) {
  const char *const *h;
  const char *p;

  if (r->method == NULL || r->method[0] == '\0' || r->url == NULL ||
      r->url[0] == '\0' || r->retries < 0 || (r->body == NULL && r->body_len))
    return UV_EINVAL;
  for (p = r->method; *p; p++)
    if (!isalnum((unsigned char) *p) && !strchr("!#$%&'*+-.^_`|~", *p))
      return UV_EINVAL;
  for (p = r->url; *p; p++)
    if ((unsigned char) *p <= ' ' || *p == 0x7f) return UV_EINVAL;
  for (h = r->headers; h != NULL && *h != NULL; h++)
    if (strpbrk(*h, "\r\n") != NULL) return UV_EINVAL;
  return 0;
}

static long timeout_ms(double t) {
  double ms;

  if (!(t > 0)) return TIMEOUT_DEFAULT_MS;  /* also catches NaN */
  ms = t * 1000.0;
  if (ms < 1) return 1;
  return ms > (double) TIMEOUT_MAX_MS ? TIMEOUT_MAX_MS : (long) ms;
}

/* "Expect:" first: curl would otherwise wait for 100-continue on big bodies,
 * costing a round trip that webhook receivers rarely honour. */
static struct curl_slist *slist_build(const char *const *h) {
  struct curl_slist *l = curl_slist_append(NULL, "Expect:"), *n;

  if (l == NULL) return NULL;
  for (; h != NULL && *h != NULL; h++) {
    n = curl_slist_append(l, *h);
    if (n == NULL) {
      curl_slist_free_all(l);
      return NULL;
    }
    l = n;
  }
  return l;
}

/* Every header, and (when some are bound to the origin) the list without
 * them, for a redirect that leaves the origin. */
static int headers_build(hw_hc_xfer_t *x, const hw_hc_request_t *r) {
  int i, n = r->origin_headers;

  for (i = 0; n > 0 && i < n; i++)
    if (r->headers == NULL || r->headers[i] == NULL) return UV_EINVAL;
  if ((x->hdrs = slist_build(r->headers)) == NULL) return UV_ENOMEM;
  if (n > 0 && (x->hdrs_pub = slist_build(r->headers + n)) == NULL)
    return UV_ENOMEM;
  return 0;
}

/* "scheme://host:port" of url, lower-cased, into out ("" when not
 * http(s)). */
static void origin_of(const char *url, char *out, size_t n) {
  const char *p = strstr(url, "://");
  size_t len, i;

  out[0] = '\0';
  if (p == NULL) return;
  p += 3;
  len = (size_t) (p - url) + strcspn(p, "/?#");
  if (len >= n) len = n - 1;
  for (i = 0; i < len; i++) out[i] = (char) tolower((unsigned char) url[i]);
  out[len] = '\0';
}

/* GET, HEAD and POST use curl's own modes so redirects behave as browsers
 * do (a 303 turns POST into GET); any other method is CUSTOMREQUEST.  A body
 * is copied into the easy handle, so the caller may free theirs. */
static CURLcode set_method(CURL *e, const hw_hc_request_t *r) {
  const char *m = r->method;
  int post = strcasecmp(m, "POST") == 0;
  int body = r->body != NULL || post || strcasecmp(m, "PUT") == 0 ||
             strcasecmp(m, "PATCH") == 0;
  CURLcode c;

  if (r->body == NULL && strcasecmp(m, "GET") == 0)
    return curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  if (r->body == NULL && strcasecmp(m, "HEAD") == 0)
    return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  c = post ? CURLE_OK : curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, m);
  if (c != CURLE_OK || !body) return c;  /* DELETE etc.: no Content-Length */
  c = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       (curl_off_t) r->body_len);
  if (c != CURLE_OK) return c;
  return curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, r->body ? r->body : "");
}

static int easy_setup(hw_hc_xfer_t *x, const hw_hc_request_t *r) {
  CURL *e = x->easy;
  CURLcode c = CURLE_OK;

#define SET(opt, val) if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val)
  SET(CURLOPT_PRIVATE, (void *) x);
  SET(CURLOPT_URL, r->url);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_ERRORBUFFER, x->errbuf);
  SET(CURLOPT_WRITEFUNCTION, hw_hc__on_write);
  SET(CURLOPT_WRITEDATA, (void *) x);
  SET(CURLOPT_HEADERFUNCTION, hw_hc__on_header);
  SET(CURLOPT_HEADERDATA, (void *) x);
  SET(CURLOPT_HTTPHEADER, x->hdrs);
  SET(CURLOPT_TIMEOUT_MS, x->timeout_ms);
  /* a stall: less than 1 byte/s over the timeout (in whole seconds) */
  SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
  SET(CURLOPT_LOW_SPEED_TIME, (x->timeout_ms + 999) / 1000);
  SET(CURLOPT_FOLLOWLOCATION, 0L); /* we follow (follow_redirect) */
  SET(CURLOPT_OPENSOCKETFUNCTION, hw_hc__on_open_socket);
  SET(CURLOPT_OPENSOCKETDATA, (void *) x);
  SET(CURLOPT_CLOSESOCKETFUNCTION, hw_hc__on_close_socket);
  SET(CURLOPT_CLOSESOCKETDATA, (void *) x->hc);
  /* a connection opened with allow_private never serves another call */
  SET(CURLOPT_FORBID_REUSE, r->allow_private ? 1L : 0L);
  SET(CURLOPT_FRESH_CONNECT, r->allow_private ? 1L : 0L);
  SET(CURLOPT_SSL_VERIFYPEER, r->insecure ? 0L : 1L);
  SET(CURLOPT_SSL_VERIFYHOST, r->insecure ? 0L : 2L);
  /* fails early on a too-large Content-Length; hw_hc__on_write covers the rest */
  SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) x->max_response);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_USERAGENT, "hookwork");
#undef SET
  if (c == CURLE_OK) c = set_method(e, r);
  if (c == CURLE_OUT_OF_MEMORY) return UV_ENOMEM;
  return c == CURLE_OK ? 0 : UV_EINVAL;
}

static int xfer_prepare(hw_hc_xfer_t *x, const hw_hc_request_t *r) {
  hw_hc_attempt_t *att;
  int rc;

  x->retries = r->retries > MAX_RETRIES ? MAX_RETRIES : r->retries;
  x->timeout_ms = timeout_ms(r->timeout);
  x->max_response = r->max_response ? r->max_response : MAX_RESPONSE_DEFAULT;
  x->allow_private = r->allow_private;
  x->natt = 0;
  x->err = 0;
  x->t0 = uv_hrtime();
  att = hw_hc__grow(x->att, &x->att_cap, x->retries + 1, sizeof *att);
  if (att == NULL) return UV_ENOMEM;
  x->att = att;
  x->strs.len = 0;
  if (hw_hc__buf_add(&x->strs, r->method, strlen(r->method), 1) < 0) return UV_ENOMEM;
  x->url_off = x->strs.len;
  if (hw_hc__buf_add(&x->strs, r->url, strlen(r->url), 1) < 0) return UV_ENOMEM;
  if ((rc = headers_build(x, r)) < 0) return rc;
  x->follow = x->hops_left = r->follow > MAX_REDIRS ? MAX_REDIRS
                           : r->follow > 0 ? r->follow : 0;
  x->post = strcasecmp(r->method, "POST") == 0;
  x->head = strcasecmp(r->method, "HEAD") == 0;
  origin_of(r->url, x->origin, sizeof x->origin);
  return easy_setup(x, r);
}

/* (Re)starts the transfer; options persist on the easy handle between
 * attempts, only the response state is cleared. */
static int attempt_start(hw_hc_xfer_t *x) {
  hw_hc_t *hc = x->hc;

  hc->buffered -= x->body.len;
  x->body.len = 0;
  if (x->body.p) x->body.p[0] = '\0';
  x->harena.len = 0;
  x->nhdr = 0;
  x->too_large = x->oom = x->mem_full = x->denied = 0;
  x->errbuf[0] = '\0';
  x->t_attempt = uv_hrtime();
  if (curl_multi_add_handle(hc->multi, x->easy) != CURLM_OK) return UV_ENOMEM;
  x->state = X_RUNNING;
  xl_push(&hc->running, x);
  return 0;
}

static void on_retry(uv_timer_t *t);

/* One timer serves every waiting transfer: it is armed for the head of the
 * deadline-sorted waiting list. */
static void retry_arm(hw_hc_t *hc) {
  hw_hc_xfer_t *x = hc->waiting.head;
  uint64_t now = uv_now(hc->loop);

  if (x == NULL) uv_timer_stop(&hc->retry_timer);
  else uv_timer_start(&hc->retry_timer, on_retry,
                      x->due > now ? x->due - now : 0, 0);
}

static void retry_schedule(hw_hc_xfer_t *x, uint64_t delay) {
  hw_hc_t *hc = x->hc;
  hw_hc_xfer_t *pos;

  x->due = uv_now(hc->loop) + delay;
  x->state = X_WAITING;
  /* from the tail: a new deadline is usually the latest one */
  for (pos = hc->waiting.tail; pos != NULL && pos->due > x->due;
       pos = pos->prev) {}
  xl_insert_before(&hc->waiting, pos ? pos->next : hc->waiting.head, x);
  if (hc->waiting.head == x) retry_arm(hc);
}

/* A retry that curl would not take (out of memory): record and deliver. */
static void restart_failed(hw_hc_xfer_t *x) {
  hw_hc_attempt_t *a = &x->att[x->natt++];

  memset(a, 0, sizeof *a);
  snprintf(a->error, sizeof a->error, "out of memory");
  deliver(x, x->err = UV_ENOMEM);
}

static void on_retry(uv_timer_t *t) {
  hw_hc_t *hc = t->data;
  hw_hc_xfer_t *x;
  uint64_t now = uv_now(hc->loop);

  /* re-read the head each time: a done callback may cancel others */
  while ((x = hc->waiting.head) != NULL && x->due <= now) {
    xl_unlink(&hc->waiting, x);
    if (attempt_start(x) < 0) restart_failed(x);
  }
  retry_arm(hc);
}

/* A 3xx with a Location while hops are left: points the transfer at the
 * target.  Each hop is a new transfer on the same handle, so the address
 * policy sees its connection; a hop to another origin drops the
 * origin-bound headers for good; 303 (and 301/302 after a POST) turn the
 * request into a GET, as browsers do.  0, or a negative code with why. */
static int follow_redirect(hw_hc_xfer_t *x, const char *loc, long status,
                           char *why, size_t n) {
  char origin[256];
  char *url;
  CURLcode c;

  if (x->hops_left == 0) {
    snprintf(why, n, "more than %d redirect%s (follow = %d)", x->follow,
             x->follow == 1 ? "" : "s", x->follow);
    return UV_ELOOP;
  }
  if (strncasecmp(loc, "http://", 7) != 0 &&
      strncasecmp(loc, "https://", 8) != 0) {
    snprintf(why, n, "redirect to %.200s: only http and https are allowed",
             loc);
    return UV_EINVAL;
  }
  if ((url = strdup(loc)) == NULL) return UV_ENOMEM;
  x->hops_left--;
  origin_of(url, origin, sizeof origin);
  c = curl_easy_setopt(x->easy, CURLOPT_URL, url);
  free(url);
  if (c == CURLE_OK && x->hdrs_pub != NULL && strcmp(origin, x->origin) != 0) {
    c = curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs_pub);
    curl_slist_free_all(x->hdrs);  /* never again, even back at home */
    x->hdrs = x->hdrs_pub;
    x->hdrs_pub = NULL;
  }
  if (c == CURLE_OK && !x->head &&
      (status == 303 || (x->post && (status == 301 || status == 302)))) {
    c = curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, NULL);
    if (c == CURLE_OK) c = curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
    x->post = 0;
  }
  if (c != CURLE_OK) {
    snprintf(why, n, "redirect: %s", curl_easy_strerror(c));
    return c == CURLE_OUT_OF_MEMORY ? UV_ENOMEM : UV_EINVAL;
  }
  return 0;
}

static int is_redirect(long s) {
  return s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
}

/* One attempt ended (curl reported CURLMSG_DONE): record it, then follow a
 * redirect, retry or deliver. */
static void attempt_done(hw_hc_xfer_t *x, CURLcode rc) {
  hw_hc_t *hc = x->hc;
  hw_hc_attempt_t *a = &x->att[x->natt++];  /* sized retries + 1 */
  long status = 0;

  curl_multi_remove_handle(hc->multi, x->easy);
  xl_unlink(&hc->running, x);
  a->seconds = SINCE(x->t_attempt);
  a->error[0] = '\0';
  if (rc == CURLE_OK)
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  a->status = (int) status;
  x->err = rc == CURLE_OK ? 0 : attempt_error(x, rc, a->error, sizeof a->error);
  if (rc == CURLE_OK && x->follow > 0 && is_redirect(status)) {
    char *loc = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &loc);
    if (loc != NULL) {
      x->err = follow_redirect(x, loc, status, a->error, sizeof a->error);
      if (x->err < 0) {
        deliver(x, x->err);
      } else {
        x->natt--;                 /* a hop is not an attempt */
        if (attempt_start(x) < 0) restart_failed(x);
      }
      return;
    }
  }
  if (x->natt <= x->retries && !x->too_large && !x->oom && !x->mem_full &&
      !x->denied && retryable(rc, status)) {
    retry_schedule(x, retry_delay(x));
    return;
  }
  deliver(x, x->err);
}

void hw_hc__drain_done(hw_hc_t *hc) {
  CURLMsg *m;
  CURLcode rc;
  char *priv;
  int left;

  while ((m = curl_multi_info_read(hc->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    rc = m->data.result;           /* m dies with curl_multi_remove_handle */
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
    attempt_done((hw_hc_xfer_t *) priv, rc);
  }
}

static void fill_headers(hw_hc_xfer_t *x, hw_hc_response_t *res) {
  char *p = x->harena.p;
  int i;

  for (i = 0; i < x->nhdr; i++) {
    x->hvec[i].name = p;
    p += strlen(p) + 1;
    x->hvec[i].value = p;
    p += strlen(p) + 1;
  }
  res->headers = x->nhdr ? x->hvec : NULL;
  res->nheaders = x->nhdr;
}

/* The single exit of a transfer: calls the done callback once, then pools
 * the transfer.  Its result is the last attempt's. */
static void deliver(hw_hc_xfer_t *x, int err) {
  hw_hc_t *hc = x->hc;
  hw_hc_response_t res;
  const char *cause;

  memset(&res, 0, sizeof res);
  res.error = err;
  res.attempts = x->att;
  res.nattempts = x->natt;
  res.seconds = SINCE(x->t0);
  res.body = x->empty;
  if (err < 0) {
    cause = err == UV_ECANCELED || x->natt == 0 ? "cancelled"
                                                : x->att[x->natt - 1].error;
    snprintf(res.errmsg, sizeof res.errmsg, "%s %s: %s", x->strs.p,
             x->strs.p + x->url_off, cause);
  } else {
    res.status = x->att[x->natt - 1].status;
    if (x->body.p != NULL) {
      res.body = x->body.p;
      res.body_len = x->body.len;
    }
    fill_headers(x, &res);
  }
  x->state = X_DELIVERING;
  hc->active--;
  x->cb(&res, x->arg);
  xfer_recycle(x);
}

/* ---- cancellation and teardown ------------------------------------------ */

static void on_defer(uv_timer_t *t);

/* Detaches a running or waiting transfer and queues its UV_ECANCELED
 * delivery; anything else (already queued, being delivered) is left alone. */
static void cancel_one(hw_hc_xfer_t *x) {
  hw_hc_t *hc = x->hc;

  if (x->state == X_RUNNING) {
    curl_multi_remove_handle(hc->multi, x->easy);
    xl_unlink(&hc->running, x);
  } else if (x->state == X_WAITING) {
    xl_unlink(&hc->waiting, x);    /* the retry timer re-arms itself */
  } else {
    return;
  }
  x->state = X_CANCELLED;
  xl_push(&hc->cancelled, x);
  uv_timer_start(&hc->defer_timer, on_defer, 0, 0);
}

/* Frees what is not a handle, then closes every handle; the client itself
 * goes in the last close callback. */
static void teardown(hw_hc_t *hc) {
  hw_hc_xfer_t *x;

  hc->torn = 1;
  while ((x = hc->pool.head) != NULL) {
    xl_unlink(&hc->pool, x);
    xfer_free(x);
  }
  curl_multi_cleanup(hc->multi);   /* may still report CURL_POLL_REMOVE */
  hc->multi = NULL;
  while (hc->socks != NULL) hw_hc__sock_close(hc->socks);
  free(hc->byfd);
  free(hc->ours);
  hc->byfd = NULL;
  hc->ours = NULL;
  hc->nfd = 0;
  uv_close((uv_handle_t *) &hc->curl_timer, hw_hc__on_timer_closed);
  uv_close((uv_handle_t *) &hc->retry_timer, hw_hc__on_timer_closed);
  uv_close((uv_handle_t *) &hc->defer_timer, hw_hc__on_timer_closed);
}

static void on_defer(uv_timer_t *t) {
  hw_hc_t *hc = t->data;
  hw_hc_xfer_t *x;

  while ((x = hc->cancelled.head) != NULL) {
    xl_unlink(&hc->cancelled, x);
    deliver(x, UV_ECANCELED);
  }
  if (hc->closing && hc->active == 0 && !hc->torn) teardown(hc);
}

/* ---- public API --------------------------------------------------------- */

int hw_hc_init(uv_loop_t *loop, hw_hc_t **out) {
  hw_hc_t *hc;

  *out = NULL;
  if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return UV_EIO;
  curl_ready = 1;
  hc = calloc(1, sizeof *hc);
  if (hc == NULL) return UV_ENOMEM;
  hc->multi = curl_multi_init();
  if (hc->multi == NULL) {
    free(hc);
    return UV_ENOMEM;
  }
  curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, hw_hc__on_socket);
  curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, (void *) hc);
  curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, hw_hc__on_curl_timer);
  curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, (void *) hc);
  hc->loop = loop;
  hw_hc_set_limits(hc, 0, 0);
  hc->rng = (uv_hrtime() ^ (uint64_t) (uintptr_t) hc) | 1;
  /* uv_timer_init cannot fail on unix: it only links the handle */
  uv_timer_init(loop, &hc->curl_timer);
  uv_timer_init(loop, &hc->retry_timer);
  uv_timer_init(loop, &hc->defer_timer);
  hc->curl_timer.data = hc->retry_timer.data = hc->defer_timer.data = hc;
  hc->handles = 3;
  *out = hc;
  return 0;
}

void hw_hc_set_policy(hw_hc_t *hc, const hw_netpolicy_t *policy) {
  hc->policy = policy;
}

void hw_hc_set_limits(hw_hc_t *hc, long max_conns, size_t max_buffered) {
  long n = max_conns > 0 ? max_conns : MAX_CONNS_DEFAULT;

  hc->max_buffered = max_buffered ? max_buffered : MAX_BUFFERED_DEFAULT;
  hc->max_conns = n;
  curl_multi_setopt(hc->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
  hw_hc_set_pool(hc, 0);
}

/* The connection cache: a call that ends puts its connection here (for the
 * next call to the same host) while fewer than idle are kept, else curl
 * closes the oldest. */
void hw_hc_set_pool(hw_hc_t *hc, long idle) {
  long n = idle > 0 ? idle : MAXCONNECTS;

  if (n > hc->max_conns) n = hc->max_conns;
  curl_multi_setopt(hc->multi, CURLMOPT_MAXCONNECTS, n);
}

void hw_hc_close(hw_hc_t *hc) {
  if (hc == NULL || hc->closing) return;
  hc->closing = 1;
  while (hc->running.head != NULL) cancel_one(hc->running.head);
  while (hc->waiting.head != NULL) cancel_one(hc->waiting.head);
  uv_timer_stop(&hc->retry_timer);
  /* teardown runs from on_defer, after the cancellations are delivered */
  uv_timer_start(&hc->defer_timer, on_defer, 0, 0);
}

int hw_hc_start(hw_hc_t *hc, const hw_hc_request_t *req, hw_hc_done_cb cb,
                void *arg, hw_hc_xfer_t **xfer) {
  hw_hc_xfer_t *x;
  int rc;

  if (xfer != NULL) *xfer = NULL;
  if (hc == NULL || req == NULL || cb == NULL) return UV_EINVAL;
  if (hc->closing) return UV_ECANCELED;
  if ((rc = req_check(req)) < 0) return rc;
  if ((x = xfer_get(hc)) == NULL) return UV_ENOMEM;
  x->cb = cb;
  x->arg = arg;
  rc = xfer_prepare(x, req);
  if (rc == 0) rc = attempt_start(x);  /* curl only arms its timer here */
  if (rc < 0) {
    xfer_recycle(x);
    return rc;
  }
  hc->active++;
  if (xfer != NULL) *xfer = x;
  return 0;
}


int hw_hc_active(const hw_hc_t *hc) { return hc->active; }
