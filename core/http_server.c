/* http_server.c: the HTTP/1.1 server declared in http_server.h.
 *
 * Owns: the listening socket, a uv_idle_t ("kick") that resumes parsing of
 * pipelined bytes after an asynchronous answer, every connection (conn_t: a
 * uv_tcp_t plus one uv_timer_t, freed in the last close callback) and every
 * request handed to the handler (it outlives its connection when the client
 * leaves while the handler holds it).
 * Uses: libuv for sockets and timers, http_parse (llhttp) for parsing, log
 * for the connection-limit and out-of-descriptors lines.
 *
 * Life of a request: on_read -> conn_parse feeds the bytes to http_parse,
 * which pauses llhttp once a request is complete, so the handler is called
 * outside llhttp_execute.  Bytes after the request wait in conn.pend.
 * hw_http_respond writes the answer with one uv_write; if it ran inside the
 * handler, conn_parse's loop goes on with the next bytes, otherwise the
 * connection is queued on the kick handle, which parses them on the next loop
 * turn.  So llhttp is never re-entered and answers leave in request order.
 *
 * Connection states: IDLE (between requests; idle timer) -> READING (first
 * byte seen; read timer) -> HELD (handler has it; no timer; reading goes on to
 * notice disconnects) -> IDLE again, or CLOSING (last answer queued) -> LINGER
 * (answer sent, FIN sent, input discarded until EOF or a short timer, so the
 * client reads the answer rather than a reset).  conn_teardown is the one path
 * that closes a connection.
 *
 * A connection's parser reuses a spare request's buffers and reads land in
 * one server-wide 64 KiB buffer, so a small keep-alive request costs one
 * malloc: its answer's write buffer.
 */
#include "http_server.h"

#include <assert.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"
#include "log.h"

#define READ_BUF_SIZE (64 * 1024)
#define PEND_MAX (64 * 1024)      /* bytes kept behind a held request */
#define WQ_MAX (1024 * 1024)      /* unsent answer bytes before reads stop */
#define LINGER_MS 2000
#define LISTEN_BACKLOG 1024
#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_READ_MS 10000
#define DEFAULT_IDLE_MS 60000
#define DEFAULT_MAX_CONNS 10000

#define CONTAINER(p, type, field) \
  ((type *) (void *) ((char *) (p) - offsetof(type, field)))

typedef struct link_s {
  struct link_s *prev, *next;
} link_t;

typedef hw_http_preq_t req_t;

enum { ST_IDLE, ST_READING, ST_HELD, ST_CLOSING, ST_LINGER };
enum { ANS_CLOSE = 1, ANS_KEEP10 = 2, ANS_HEAD = 4 };

typedef struct hw_http_conn_s {
  uv_tcp_t tcp;
  uv_timer_t timer;          /* idle, read, or linger timeout by state */
  uv_shutdown_t shut;
  hw_http_parse_t parse;
  hw_http_server_t *srv;
  link_t all;                /* in srv->conns */
  link_t kick;               /* in srv->kicks while queued */
  int state;
  int handles;               /* open handles; freed when this reaches 0 */
  int dead;                  /* conn_teardown has run */
  int reading, in_parse, nwrites;
  req_t *held;               /* request the handler has */
  char *pend;                /* unparsed bytes behind a held request */
  size_t pend_off, pend_len, pend_cap;
  char peer_ip[64];
} conn_t;

struct hw_http_server_s {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_idle_t kick;            /* last handle closed; frees the server */
  uv_tcp_t reject;           /* accepts and drops when conn_t can't be had */
  hw_http_limits_t limits;
  hw_http_handler_cb cb;
  void *arg;
  link_t conns, kicks;
  size_t nconns, nheld;
  size_t body_bytes;         /* request bodies held, all connections */
  uint64_t refused, last_note; /* refused connections; last log (ms) */
  int port, closing, listener_open, reject_busy, accept_stalled;
  int kick_active, finishing;
  void (*done)(void *);
  void *done_arg;
  char rbuf[READ_BUF_SIZE];  /* every read lands here; see on_alloc */
};

typedef struct wreq_s {
  uv_write_t req;
  conn_t *c;
  size_t len;
  char data[];
} wreq_t;

static void on_timer(uv_timer_t *t);
static void on_kick(uv_idle_t *h);
static void conn_teardown(conn_t *c);
static void conn_fail(conn_t *c, int status);
static void srv_maybe_finish(hw_http_server_t *srv);

/* ---- small helpers ---- */

static void link_init(link_t *l) { l->prev = l->next = l; }
static int link_empty(const link_t *l) { return l->next == l; }

static void link_add(link_t *head, link_t *l) {
  l->prev = head->prev;
  l->next = head;
  head->prev->next = l;
  head->prev = l;
}

static void link_del(link_t *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  link_init(l);
}

/* ---- writing ---- */

static void conn_linger(conn_t *c);
static void conn_update_reading(conn_t *c);

static void on_write(uv_write_t *req, int status) {
  wreq_t *w = CONTAINER(req, wreq_t, req);
  conn_t *c = w->c;

  free(w);
  c->nwrites--;
  if (c->dead) /* teardown cancelled us; conn is freed after this */
    return;
  if (status < 0)
    conn_teardown(c);
  else if (c->state == ST_CLOSING && c->nwrites == 0)
    conn_linger(c);
  else
    conn_update_reading(c); /* the write queue may have drained */
}

/* Queues w (takes ownership) on c's socket. */
static int conn_send(conn_t *c, wreq_t *w) {
  uv_buf_t b = uv_buf_init(w->data, (unsigned) w->len);
  int rc;

  w->c = c;
  rc = uv_write(&w->req, (uv_stream_t *) &c->tcp, &b, 1, on_write);
  if (rc < 0) {
    free(w);
    return rc;
  }
  c->nwrites++;
  return 0;
}

static int conn_write(conn_t *c, const char *data, size_t len) {
  wreq_t *w = malloc(sizeof *w + len);

  if (w == NULL)
    return UV_ENOMEM;
  memcpy(w->data, data, len);
  w->len = len;
  return conn_send(c, w);
}

static char *put(char *p, const char *s) {
  size_t n = strlen(s);

  memcpy(p, s, n);
  return p + n;
}

/* Builds a whole answer in one buffer and queues it (flags: ANS_*). */
static int write_answer(conn_t *c, int status, const char *ctype,
                        const char *const *hdrs, const char *body,
                        size_t blen, int flags) {
  const char *reason = hw_http_reason(status);
  int bodyless = status == 204 || status == 304;
  int send_body = !bodyless && !(flags & ANS_HEAD) && blen > 0;
  size_t total = 160 + strlen(reason), i;
  wreq_t *w;
  char *p;

  if (ctype != NULL)
    total += strlen(ctype) + 16;
  for (i = 0; hdrs != NULL && hdrs[i] != NULL; i++)
    total += strlen(hdrs[i]) + 2;
  total += send_body ? blen : 0;
  if ((w = malloc(sizeof *w + total)) == NULL)
    return UV_ENOMEM;
  p = w->data + sprintf(w->data, "HTTP/1.1 %d %s\r\n", status, reason);
  if (ctype != NULL)
    p = put(put(put(p, "Content-Type: "), ctype), "\r\n");
  for (i = 0; hdrs != NULL && hdrs[i] != NULL; i++)
    p = put(put(p, hdrs[i]), "\r\n");
  if (!bodyless)
    p += sprintf(p, "Content-Length: %zu\r\n", blen);
  if (flags & ANS_CLOSE)
    p = put(p, "Connection: close\r\n");
  else if (flags & ANS_KEEP10) /* HTTP/1.0 closes unless told otherwise */
    p = put(p, "Connection: keep-alive\r\n");
  p = put(p, "\r\n");
  if (send_body) {
    memcpy(p, body, blen);
    p += blen;
  }
  w->len = (size_t) (p - w->data);
  return conn_send(c, w);
}

/* ---- connection lifecycle ---- */

static void on_conn_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  hw_http_server_t *srv = c->srv;

  if (--c->handles > 0)
    return;
  srv->nconns--;
  free(c);
  srv_maybe_finish(srv);
}

static void pend_clear(conn_t *c) {
  free(c->pend);
  c->pend = NULL;
  c->pend_off = c->pend_len = c->pend_cap = 0;
}

/* The single teardown path: detaches a held request (it stays valid for the
 * handler, with conn == NULL), frees buffers, closes both handles. */
static void conn_teardown(conn_t *c) {
  if (c->dead)
    return;
  c->dead = 1;
  link_del(&c->all);
  if (!link_empty(&c->kick))
    link_del(&c->kick);
  if (c->held != NULL) {
    c->held->pub.conn = NULL;
    c->held = NULL;
  }
  hw_http_parse_free(&c->parse);
  pend_clear(c);
  uv_close((uv_handle_t *) &c->timer, on_conn_closed);
  uv_close((uv_handle_t *) &c->tcp, on_conn_closed); /* writes: ECANCELED */
}

static unsigned linger_ms(const conn_t *c) {
  unsigned ms = c->srv->limits.read_timeout_ms;
  return ms < LINGER_MS ? ms : LINGER_MS;
}

/* The last answer is queued: wait for it, then linger. */
static void conn_closing(conn_t *c) {
  c->state = ST_CLOSING;
  uv_timer_start(&c->timer, on_timer, linger_ms(c), 0);
  if (c->nwrites == 0)
    conn_linger(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = CONTAINER(req, conn_t, shut);

  if (!c->dead && status < 0)
    conn_teardown(c);
}

/* Sends FIN and drops input until EOF or the timer: closing with unread input
 * would send a reset that can destroy the answer before the client reads it. */
static void conn_linger(conn_t *c) {
  c->state = ST_LINGER;
  uv_timer_start(&c->timer, on_timer, linger_ms(c), 0);
  if (uv_shutdown(&c->shut, (uv_stream_t *) &c->tcp, on_shutdown) < 0)
    conn_teardown(c);
  else
    conn_update_reading(c);
}

/* Answers a limit or parse error itself, then closes. */
static void conn_fail(conn_t *c, int status) {
  char body[128];
  const char *msg = status == 400   ? "bad request"
                    : status == 408 ? "request timeout"
                    : status == 413 ? "request body too large"
                    : status == 431 ? "request headers too large"
                    : status == 505 ? "HTTP version not supported"
                    : status == 503 ? "server busy: request bodies held "
                                      "are at their memory limit"
                                    : "internal server error";
  static const char *const retry[] = {"Retry-After: 1", NULL};
  int n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);

  hw_http_parse_abort(&c->parse);
  if (write_answer(c, status, "application/json",
                   status == 503 ? retry : NULL, body, (size_t) n,
                   ANS_CLOSE) < 0)
    conn_teardown(c);
  else
    conn_closing(c);
}

static void on_timer(uv_timer_t *t) {
  conn_t *c = t->data;

  if (c->state == ST_READING)
    conn_fail(c, 408);
  else if (c->state != ST_HELD) /* idle keep-alive, or linger over */
    conn_teardown(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn_t *c = h->data;

  /* libuv calls read_cb right after alloc_cb and on_read copies what it keeps,
   * so one buffer serves every connection. */
  buf->base = c->srv->rbuf;
  buf->len = sizeof c->srv->rbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* Reads unless a held request has PEND_MAX bytes behind it or the client
 * isn't taking its answers, so a flood can't grow memory. */
static void conn_update_reading(conn_t *c) {
  size_t wq;
  int want;

  if (c->dead)
    return;
  wq = uv_stream_get_write_queue_size((uv_stream_t *) &c->tcp);
  want = wq < WQ_MAX &&
         !(c->state == ST_HELD && c->pend_len - c->pend_off >= PEND_MAX);
  if (want == c->reading)
    return;
  if (!want) {
    uv_read_stop((uv_stream_t *) &c->tcp);
    c->reading = 0;
  } else if (uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read) < 0) {
    conn_teardown(c);
  } else {
    c->reading = 1;
  }
}

/* ---- parsing and dispatch ---- */

static void kick(conn_t *c) {
  hw_http_server_t *srv = c->srv;

  if (!link_empty(&c->kick))
    return;
  link_add(&srv->kicks, &c->kick);
  if (!srv->kick_active) {
    uv_idle_start(&srv->kick, on_kick);
    srv->kick_active = 1;
  }
}

/* Notes the start of a request (read timer), sends 100 Continue if the
 * client waits for it, or hands a complete request to the handler. */
static void conn_step(conn_t *c, int rc, req_t *r) {
  hw_http_server_t *srv = c->srv;

  if (c->parse.want_continue) {
    c->parse.want_continue = 0;
    if (rc == HW_HTTP_PARSE_MORE) /* a failed socket shows up again later */
      (void) conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
  }
  if (rc == HW_HTTP_PARSE_ERROR) {
    conn_fail(c, c->parse.err_status);
  } else if (rc == HW_HTTP_PARSE_MORE) {
    if (c->parse.cur != NULL && c->state == ST_IDLE) {
      c->state = ST_READING; /* the read timeout runs from the first byte */
      uv_timer_start(&c->timer, on_timer, srv->limits.read_timeout_ms, 0);
    }
  } else {
    r->srv = srv;
    r->pub.conn = c;
    r->pub.keep_alive = r->pub.keep_alive && !srv->closing;
    memcpy(r->pub.peer_ip, c->peer_ip, sizeof r->pub.peer_ip);
    c->held = r;
    c->state = ST_HELD;
    uv_timer_stop(&c->timer); /* the handler takes as long as it needs */
    srv->nheld++;
    srv->cb(srv, &r->pub, srv->arg); /* may answer right here */
  }
}

/* Feeds bytes to the parser until they run out or a request is held, calling
 * the handler for each complete request; returns the bytes consumed. */
static size_t conn_parse(conn_t *c, const char *data, size_t len) {
  size_t used = 0, n;
  req_t *r;
  int rc;

  c->in_parse = 1;
  while (used < len && !c->dead &&
         (c->state == ST_IDLE || c->state == ST_READING)) {
    rc = hw_http_parse_feed(&c->parse, data + used, len - used, &n, &r);
    used += n;
    conn_step(c, rc, r);
  }
  c->in_parse = 0;
  return used;
}

static int pend_add(conn_t *c, const char *data, size_t len) {
  if (c->pend_off > 0) { /* compact first so the buffer stays bounded */
    memmove(c->pend, c->pend + c->pend_off, c->pend_len - c->pend_off);
    c->pend_len -= c->pend_off;
    c->pend_off = 0;
  }
  if (c->pend_len + len > c->pend_cap) { /* at most PEND_MAX + one read */
    size_t cap = c->pend_len + len + READ_BUF_SIZE;
    char *p = realloc(c->pend, cap);
    if (p == NULL)
      return UV_ENOMEM;
    c->pend = p;
    c->pend_cap = cap;
  }
  memcpy(c->pend + c->pend_len, data, len);
  c->pend_len += len;
  return 0;
}

/* Parses the bytes kept in pend. */
static void conn_drain(conn_t *c) {
  size_t n;

  if (c->state != ST_IDLE && c->state != ST_READING)
    return;
  if (c->pend_len == c->pend_off) { /* read and parsed since queued */
    conn_update_reading(c);
    return;
  }
  n = conn_parse(c, c->pend + c->pend_off, c->pend_len - c->pend_off);
  if (c->dead)
    return;
  c->pend_off += n;
  if (c->pend_off >= c->pend_len || c->state >= ST_CLOSING)
    pend_clear(c); /* pipelining is rare: don't keep the buffer */
  conn_update_reading(c);
}

static void on_kick(uv_idle_t *h) {
  hw_http_server_t *srv = h->data;
  conn_t *c;

  while (!link_empty(&srv->kicks)) {
    c = CONTAINER(srv->kicks.next, conn_t, kick);
    link_del(&c->kick);
    conn_drain(c);
  }
  uv_idle_stop(&srv->kick);
  srv->kick_active = 0;
}

/* Input arriving behind a held request or queued bytes: keep it in order. */
static void conn_queue_input(conn_t *c, const char *data, size_t n) {
  if (pend_add(c, data, n) < 0) {
    if (c->state == ST_HELD) /* can't answer out of order: just close */
      conn_teardown(c);
    else
      conn_fail(c, 500);
  } else if (c->state == ST_HELD) {
    conn_update_reading(c); /* stops reading once PEND_MAX is reached */
  } else {
    conn_drain(c);
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  size_t n = nread > 0 ? (size_t) nread : 0, used;

  if (nread < 0) { /* EOF or error: the client is gone */
    conn_teardown(c);
    return;
  }
  if (n == 0 || c->state >= ST_CLOSING) /* answered already: drop input */
    return;
  if (c->state == ST_HELD || c->pend_len > c->pend_off) {
    conn_queue_input(c, buf->base, n);
    return;
  }
  used = conn_parse(c, buf->base, n); /* the common case: no copy */
  if (c->dead)
    return;
  if (c->state == ST_HELD && used < n &&
      pend_add(c, buf->base + used, n - used) < 0) {
    conn_teardown(c);
    return;
  }
  conn_update_reading(c);
}

/* Sends the handler's answer on c and sets up what comes next. */
static int conn_answer(conn_t *c, req_t *r, int status, const char *ctype,
                       const char *const *hdrs, const char *body,
                       size_t blen) {
  int close = !r->pub.keep_alive || c->srv->closing;
  int flags = (close ? ANS_CLOSE : 0) | (r->head ? ANS_HEAD : 0) |
              (r->http_minor == 0 ? ANS_KEEP10 : 0);
  int bad = status < 200 || status > 999 ||
            (ctype != NULL && strpbrk(ctype, "\r\n") != NULL);
  int rc;
  size_t i;

  for (i = 0; !bad && hdrs != NULL && hdrs[i] != NULL; i++)
    bad = strpbrk(hdrs[i], "\r\n") != NULL; /* no response splitting */
  if (bad)
    rc = write_answer(c, 500, NULL, NULL, NULL, 0, ANS_CLOSE);
  else
    rc = write_answer(c, status, ctype, hdrs, body, blen, flags);
  if (rc < 0) {
    conn_teardown(c);
    return rc;
  }
  if (close || bad) {
    conn_closing(c);
    return bad ? UV_EINVAL : 0;
  }
  c->state = ST_IDLE;
  uv_timer_start(&c->timer, on_timer, c->srv->limits.idle_timeout_ms, 0);
  if (c->pend_len > c->pend_off && !c->in_parse) /* conn_parse goes on */
    kick(c);                                      /* by itself otherwise */
  conn_update_reading(c);
  return 0;
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *l, int status);

static void on_reject_closed(uv_handle_t *h) {
  hw_http_server_t *srv = h->data;

  srv->reject_busy = 0;
  if (srv->accept_stalled && !srv->closing) {
    srv->accept_stalled = 0;
    on_connection((uv_stream_t *) &srv->listener, 0); /* take the waiting fd */
  }
  srv_maybe_finish(srv);
}

/* Out of memory for a connection: accept and drop it, or libuv would stop
 * polling the listener with the fd pending. */
static void reject(hw_http_server_t *srv) {
  if (srv->reject_busy || uv_tcp_init(srv->loop, &srv->reject) < 0) {
    srv->accept_stalled = 1; /* retried from on_reject_closed */
    return;
  }
  srv->reject_busy = 1;
  srv->reject.data = srv;
  (void) uv_accept((uv_stream_t *) &srv->listener,
                   (uv_stream_t *) &srv->reject);
  uv_close((uv_handle_t *) &srv->reject, on_reject_closed);
}

/* Fills c->peer_ip, giving IPv4-mapped IPv6 peers as plain IPv4. */
static void peer_name(conn_t *c) {
  struct sockaddr_storage ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *) &ss;
  int len = sizeof ss;

  c->peer_ip[0] = '\0';
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *) &ss, &len) < 0)
    return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *) &ss, c->peer_ip, sizeof c->peer_ip);
  else if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
    uv_inet_ntop(AF_INET, a6->sin6_addr.s6_addr + 12, c->peer_ip,
                 sizeof c->peer_ip);
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name(a6, c->peer_ip, sizeof c->peer_ip);
}

/* A refused connection is logged, at most once a second, with a count. */
static void note_refused(hw_http_server_t *srv, const char *why) {
  uint64_t now = uv_now(srv->loop);

  srv->refused++;
  if (srv->last_note != 0 && now - srv->last_note < 1000)
    return;
  srv->last_note = now;
  hw_log("http", "port %d: %s: new connection closed (%llu so far)",
         srv->port, why, (unsigned long long) srv->refused);
}

static void on_connection(uv_stream_t *l, int status) {
  hw_http_server_t *srv = l->data;
  conn_t *c;

  if (srv->closing)
    return;
  if (status < 0) { /* EMFILE: libuv has already accepted and closed it */
    note_refused(srv, uv_strerror(status));
    return;
  }
  if (srv->nconns >= srv->limits.max_conns) {
    char why[64];
    snprintf(why, sizeof why, "connection limit of %u reached",
             srv->limits.max_conns);
    note_refused(srv, why);
    reject(srv);
    return;
  }
  if ((c = calloc(1, sizeof *c)) == NULL) {
    reject(srv);
    return;
  }
  if (uv_tcp_init(srv->loop, &c->tcp) < 0) {
    free(c);
    reject(srv);
    return;
  }
  uv_timer_init(srv->loop, &c->timer);
  c->srv = srv;
  c->tcp.data = c->timer.data = c;
  c->handles = 2;
  link_init(&c->kick);
  link_add(&srv->conns, &c->all);
  srv->nconns++;
  hw_http_parse_init(&c->parse, srv->limits.max_body, &srv->body_bytes,
                     srv->limits.max_body_total);
  if (uv_accept(l, (uv_stream_t *) &c->tcp) < 0) {
    conn_teardown(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  peer_name(c);
  c->state = ST_IDLE;
  uv_timer_start(&c->timer, on_timer, srv->limits.idle_timeout_ms, 0);
  conn_update_reading(c);
}

/* ---- server ---- */

static void on_srv_closed(uv_handle_t *h) {
  hw_http_server_t *srv = h->data;
  void (*done)(void *) = srv->done;
  void *arg = srv->done_arg;

  free(srv);
  if (done != NULL)
    done(arg);
}

/* Closes the last handle once nothing else refers to the server. */
static void srv_maybe_finish(hw_http_server_t *srv) {
  if (!srv->closing || srv->listener_open || srv->nconns > 0 ||
      srv->nheld > 0 || srv->reject_busy || srv->finishing)
    return;
  srv->finishing = 1;
  uv_close((uv_handle_t *) &srv->kick, on_srv_closed);
}

static void on_listener_closed(uv_handle_t *h) {
  hw_http_server_t *srv = h->data;

  srv->listener_open = 0;
  srv_maybe_finish(srv);
}

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss) {
  if (strchr(host, ':') != NULL)
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *) ss);
  return uv_ip4_addr(host, port, (struct sockaddr_in *) ss);
}

static void set_limits(hw_http_limits_t *dst, const hw_http_limits_t *src) {
  dst->max_body = src && src->max_body ? src->max_body : DEFAULT_MAX_BODY;
  dst->read_timeout_ms =
      src && src->read_timeout_ms ? src->read_timeout_ms : DEFAULT_READ_MS;
  dst->idle_timeout_ms =
      src && src->idle_timeout_ms ? src->idle_timeout_ms : DEFAULT_IDLE_MS;
  dst->max_conns = src && src->max_conns ? src->max_conns : DEFAULT_MAX_CONNS;
  dst->max_body_total = src ? src->max_body_total : 0;
}

/* Binds and listens; on failure the handles close and free srv later. */
static int srv_listen(hw_http_server_t *srv, const struct sockaddr *sa) {
  struct sockaddr_storage ss;
  int len = sizeof ss, rc;

  rc = uv_tcp_bind(&srv->listener, sa, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *) &srv->listener, LISTEN_BACKLOG,
                   on_connection);
  if (rc == 0)
    rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *) &ss, &len);
  if (rc < 0)
    return rc;
  srv->port = ntohs(ss.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *) &ss)->sin6_port
                        : ((struct sockaddr_in *) &ss)->sin_port);
  return 0;
}

int hw_http_server_start(uv_loop_t *loop, const char *host, int port,
                         const hw_http_limits_t *limits,
                         hw_http_handler_cb cb, void *arg,
                         hw_http_server_t **out) {
  struct sockaddr_storage ss;
  hw_http_server_t *srv;
  int rc;

  if (loop == NULL || host == NULL || cb == NULL || out == NULL || port < 0 ||
      port > 65535)
    return UV_EINVAL;
  if ((rc = parse_addr(host, port, &ss)) < 0)
    return rc;
  if ((srv = calloc(1, sizeof *srv)) == NULL)
    return UV_ENOMEM;
  if ((rc = uv_tcp_init(loop, &srv->listener)) < 0) {
    free(srv);
    return rc;
  }
  uv_idle_init(loop, &srv->kick);
  srv->loop = loop;
  srv->listener.data = srv->kick.data = srv;
  srv->cb = cb;
  srv->arg = arg;
  srv->listener_open = 1;
  link_init(&srv->conns);
  link_init(&srv->kicks);
  set_limits(&srv->limits, limits);
  if ((rc = srv_listen(srv, (const struct sockaddr *) &ss)) < 0) {
    srv->closing = 1; /* the loop frees srv once the handles close */
    uv_close((uv_handle_t *) &srv->listener, on_listener_closed);
    return rc;
  }
  *out = srv;
  return 0;
}

int hw_http_server_port(const hw_http_server_t *srv) { return srv->port; }

void hw_http_server_close(hw_http_server_t *srv, void (*done)(void *),
                          void *done_arg) {
  link_t *l, *next;

  if (srv == NULL || srv->closing)
    return;
  srv->closing = 1;
  srv->done = done;
  srv->done_arg = done_arg;
  uv_close((uv_handle_t *) &srv->listener, on_listener_closed);
  /* Idle connections go now (once their last answer is out); the others
   * close after their current answer. */
  for (l = srv->conns.next; l != &srv->conns; l = next) {
    conn_t *c = CONTAINER(l, conn_t, all);
    next = l->next;
    if (c->state == ST_IDLE && c->nwrites > 0)
      conn_closing(c);
    else if (c->state == ST_IDLE)
      conn_teardown(c);
  }
  srv_maybe_finish(srv);
}

/* ---- requests, public side ---- */

int hw_http_respond(hw_http_req_t *req, int status, const char *content_type,
                    const char *const *headers, const char *body,
                    size_t body_len) {
  req_t *r = (req_t *) req; /* pub is req_t's first member */
  conn_t *c = req->conn;
  hw_http_server_t *srv = r->srv;
  int rc = 0;

  if (c != NULL) {
    assert(c->held == r);
    c->held = NULL;
    rc = conn_answer(c, r, status, content_type, headers, body, body_len);
  }
  srv->nheld--;
  if (c != NULL && !c->dead)
    hw_http_parse_recycle(&c->parse, r);
  else
    hw_http_parse_req_free(r);
  srv_maybe_finish(srv);
  return rc;
}

int hw_http_req_gone(const hw_http_req_t *req) { return req->conn == NULL; }

const char *hw_http_req_header(const hw_http_req_t *req, const char *name) {
  int i;

  for (i = 0; i < req->nheaders; i++)
    if (strcmp(req->headers[i].name, name) == 0)
      return req->headers[i].value;
  return NULL;
}

const char *hw_http_reason(int status) {
  static const struct { int code; const char *text; } tab[] = {
    {100, "Continue"}, {200, "OK"}, {201, "Created"}, {202, "Accepted"},
    {204, "No Content"}, {301, "Moved Permanently"}, {302, "Found"},
    {303, "See Other"}, {304, "Not Modified"}, {307, "Temporary Redirect"},
    {308, "Permanent Redirect"}, {400, "Bad Request"},
    {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"},
    {405, "Method Not Allowed"}, {406, "Not Acceptable"},
    {408, "Request Timeout"}, {409, "Conflict"}, {410, "Gone"},
    {411, "Length Required"}, {412, "Precondition Failed"},
    {413, "Payload Too Large"}, {414, "URI Too Long"},
    {415, "Unsupported Media Type"}, {422, "Unprocessable Entity"},
    {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"}, {501, "Not Implemented"},
    {502, "Bad Gateway"}, {503, "Service Unavailable"},
    {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"},
  };
  size_t i;

  for (i = 0; i < sizeof tab / sizeof tab[0]; i++)
    if (tab[i].code == status)
      return tab[i].text;
  return "Unknown";
}
