/* test_http_server.c: unit tests for core/http_server.c.
 *
 * Each test starts the server on 127.0.0.1, port 0, in its own uv loop on the
 * main thread and runs a client with plain blocking sockets on a second
 * thread.  The client stores what it read in the context; the main thread
 * asserts after the loop has ended, and every test checks that the server
 * called `done` once and that uv_loop_close() == 0 (no handle leaked).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "http_server.h"
#include "unit.h"

enum { MODE_ECHO, MODE_HOLD, MODE_ASYNC, MODE_HOLD_CLOSE, MODE_BAD };
#define NRESP 4

typedef struct {
  int status;
  char head[4096];
  char body[32 * 1024];
  size_t body_len;
} resp_t;

typedef struct {
  int fd;
  size_t len;
  char buf[64 * 1024];
} cli_t;

typedef struct ctx_s ctx_t;
typedef void (*client_fn)(ctx_t *x);

struct ctx_s {
  uv_loop_t loop;
  uv_async_t stop;
  uv_timer_t timer;          /* async answers, later answers */
  uv_sem_t sem;              /* handler -> client: request is held */
  hw_http_server_t *srv;
  hw_http_limits_t limits;
  const char *host;
  client_fn client;
  int mode, port, start_rc, loop_rc, done_calls, nreq, stop_sent;
  int polls, gone_seen, respond_rc, done_before_answer;
  hw_http_req_t *held[4];
  int nheld;
  resp_t resp[NRESP];
  int eof[NRESP];            /* client saw the connection close */
  long elapsed_ms;
  char note[256];            /* client-side failure description */
};

static ctx_t X;

static long now_ms(void) { return (long) (uv_hrtime() / 1000000); }

/* ---- client side (runs on the client thread) ---- */

static int cli_open_at(cli_t *c, const char *ip, int port) {
  struct sockaddr_storage ss;
  struct timeval tv = {3, 0};
  int one = 1, v6 = strchr(ip, ':') != NULL;

  memset(&ss, 0, sizeof ss);
  if (v6)
    uv_ip6_addr(ip, port, (struct sockaddr_in6 *) &ss);
  else
    uv_ip4_addr(ip, port, (struct sockaddr_in *) &ss);
  c->len = 0;
  c->fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return connect(c->fd, (struct sockaddr *) &ss,
                 v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
}

static int cli_open(cli_t *c, ctx_t *x) {
  return cli_open_at(c, "127.0.0.1", x->port);
}

static void cli_send(cli_t *c, const char *s, size_t n) {
  while (n > 0) {
    ssize_t k = send(c->fd, s, n, MSG_NOSIGNAL);
    if (k <= 0)
      return;
    s += k;
    n -= (size_t) k;
  }
}

static void cli_puts(cli_t *c, const char *s) { cli_send(c, s, strlen(s)); }

/* Reads more into the buffer; >0 bytes, 0 EOF, -1 error or timeout. */
static int cli_fill(cli_t *c) {
  ssize_t k;

  if (c->len == sizeof c->buf)
    return -1;
  k = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
  if (k > 0)
    c->len += (size_t) k;
  return k > 0 ? (int) k : k == 0 ? 0 : -1;
}

static void cli_eat(cli_t *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

/* Reads one response (a 100 Continue counts as one); its status or -1. */
static int cli_resp(cli_t *c, resp_t *r) {
  char *end, *cl;
  size_t hlen, blen = 0;

  r->status = -1;
  while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL)
    if (cli_fill(c) <= 0)
      return -1;
  hlen = (size_t) (end - c->buf) + 4;
  if (hlen >= sizeof r->head)
    return -1;
  memcpy(r->head, c->buf, hlen);
  r->head[hlen] = '\0';
  if ((cl = strcasestr(r->head, "\r\ncontent-length:")) != NULL)
    blen = strtoul(cl + 17, NULL, 10);
  while (c->len < hlen + blen)
    if (cli_fill(c) <= 0)
      return -1;
  if (blen >= sizeof r->body)
    return -1;
  memcpy(r->body, c->buf + hlen, blen);
  r->body[blen] = '\0';
  r->body_len = blen;
  cli_eat(c, hlen + blen);
  r->status = atoi(r->head + 9);
  return r->status;
}

/* 1 when the server closed the connection (EOF or reset) with nothing more. */
static int cli_eof(cli_t *c) {
  int k;

  if (c->len > 0)
    return 0;
  k = cli_fill(c);
  return k == 0 || (k < 0 && errno == ECONNRESET);
}

static void cli_close(cli_t *c) { close(c->fd); }

static void client_main(void *arg) {
  ctx_t *x = arg;

  x->client(x);
  if (!x->stop_sent) {
    x->stop_sent = 1;
    uv_async_send(&x->stop);
  }
}

/* ---- server side (runs on the loop thread) ---- */

static void answer(hw_http_req_t *req) {
  const char *t = hw_http_req_header(req, "x-test");
  char h1[96], h2[96], h3[32], *out;
  const char *hdrs[] = {h1, h2, h3, NULL};
  size_t n = strlen(req->method) + strlen(req->path) + strlen(req->query) +
             req->body_len + 8;
  int len;

  snprintf(h1, sizeof h1, "X-Peer: %s", req->peer_ip);
  snprintf(h2, sizeof h2, "X-Test: %s", t ? t : "-");
  snprintf(h3, sizeof h3, "X-Count: %d", req->nheaders);
  if ((out = malloc(n)) == NULL)
    abort();
  len = snprintf(out, n, "%s %s %s ", req->method, req->path, req->query);
  memcpy(out + len, req->body, req->body_len);
  X.respond_rc = hw_http_respond(req, 200, "text/plain", hdrs, out,
                                 (size_t) len + req->body_len);
  free(out);
}

static void answer_held(void) {
  int i;

  for (i = 0; i < X.nheld; i++)
    answer(X.held[i]);
  X.nheld = 0;
}

static void on_async_timer(uv_timer_t *t) { answer_held(); }

/* MODE_HOLD: waits (up to 2 s) for the server to notice the client left. */
static void on_poll_gone(uv_timer_t *t) {
  if (!hw_http_req_gone(X.held[0]) && ++X.polls < 200)
    return;
  X.gone_seen = hw_http_req_gone(X.held[0]);
  uv_timer_stop(t);
  answer_held();
}

static void on_later_answer(uv_timer_t *t) {
  X.done_before_answer = X.done_calls;
  answer_held();
}

static void handler(hw_http_server_t *srv, hw_http_req_t *req, void *arg) {
  ctx_t *x = arg;
  const char *bad[] = {"X-Evil: a\r\nSet-Cookie: b", NULL};

  x->nreq++;
  if (x->mode == MODE_ECHO) {
    answer(req);
  } else if (x->mode == MODE_BAD) {
    x->respond_rc = hw_http_respond(req, 200, NULL, bad, "x", 1);
  } else {
    x->held[x->nheld++] = req;
    if (x->mode == MODE_ASYNC)
      uv_timer_start(&x->timer, on_async_timer, 20, 0);
    else if (x->mode == MODE_HOLD)
      uv_timer_start(&x->timer, on_poll_gone, 10, 10);
    uv_sem_post(&x->sem);
  }
}

static void on_done(void *arg) {
  ctx_t *x = arg;

  x->done_calls++;
  uv_close((uv_handle_t *) &x->timer, NULL);
}

static void on_stop(uv_async_t *a) {
  ctx_t *x = a->data;

  hw_http_server_close(x->srv, on_done, x);
  uv_close((uv_handle_t *) &x->stop, NULL);
  if (x->mode == MODE_HOLD_CLOSE)
    uv_timer_start(&x->timer, on_later_answer, 50, 0);
}

static void ctx_reset(int mode) {
  memset(&X, 0, sizeof X);
  X.mode = mode;
  X.host = "127.0.0.1";
  X.limits.max_body = 1024 * 1024;
  X.limits.read_timeout_ms = 2000;
  X.limits.idle_timeout_ms = 2000;
}

/* Runs the server until the client is done, then closes everything. */
static void run(client_fn fn) {
  uv_thread_t th;

  alarm(30); /* a hung test fails instead of blocking the suite */
  uv_loop_init(&X.loop);
  uv_timer_init(&X.loop, &X.timer);
  uv_async_init(&X.loop, &X.stop, on_stop);
  X.stop.data = &X;
  uv_sem_init(&X.sem, 0);
  X.start_rc = hw_http_server_start(&X.loop, X.host, 0, &X.limits, handler,
                                    &X, &X.srv);
  if (X.start_rc == 0) {
    X.port = hw_http_server_port(X.srv);
    X.client = fn;
    uv_thread_create(&th, client_main, &X);
    uv_run(&X.loop, UV_RUN_DEFAULT);
    uv_thread_join(&th);
  } else {
    uv_close((uv_handle_t *) &X.timer, NULL);
    uv_close((uv_handle_t *) &X.stop, NULL);
    uv_run(&X.loop, UV_RUN_DEFAULT);
  }
  X.loop_rc = uv_loop_close(&X.loop);
  uv_sem_destroy(&X.sem);
  alarm(0);
}

#define ASSERT_CLEAN() do { ASSERT_EQ(X.start_rc, 0); \
  ASSERT_STREQ(X.note, ""); ASSERT_EQ(X.done_calls, 1); \
  ASSERT_EQ(X.loop_rc, 0); } while (0)
#define HAS(hay, needle) (strstr((hay), (needle)) != NULL)

/* ---- clients and tests ---- */

static void c_post(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  cli_puts(c, "POST /hook?a=1&b=2 HTTP/1.1\r\nHost: x\r\n"
              "X-TEST:   spaced value  \r\nContent-Length: 5\r\n\r\nhello");
  cli_resp(c, &x->resp[0]);
  cli_close(c);
  free(c);
}

TEST(post_content_length) {
  ctx_reset(MODE_ECHO);
  run(c_post);
  ASSERT_CLEAN();
  ASSERT_EQ(X.resp[0].status, 200);
  ASSERT_STREQ(X.resp[0].body, "POST /hook a=1&b=2 hello");
  ASSERT_TRUE(HAS(X.resp[0].head, "HTTP/1.1 200 OK\r\n"));
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nContent-Type: text/plain\r\n"));
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nX-Test: spaced value\r\n"));
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nX-Peer: 127.0.0.1\r\n"));
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nX-Count: 3\r\n"));
  ASSERT_TRUE(!HAS(X.resp[0].head, "Connection: close"));
}

static void c_keepalive(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  cli_puts(c, "POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none");
  cli_resp(c, &x->resp[0]);
  cli_puts(c, "GET /2?q HTTP/1.1\r\nHost: x\r\n\r\n");
  cli_resp(c, &x->resp[1]);
  cli_close(c);
  free(c);
}

TEST(keep_alive_two_requests) {
  ctx_reset(MODE_ECHO);
  run(c_keepalive);
  ASSERT_CLEAN();
  ASSERT_EQ(X.nreq, 2);
  ASSERT_STREQ(X.resp[0].body, "POST /1  one");
  ASSERT_STREQ(X.resp[1].body, "GET /2 q ");
}

static void c_pipeline(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);
  int i;

  cli_open(c, x);
  cli_puts(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"
              "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nbb"
              "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nccc");
  for (i = 0; i < 3; i++)
    cli_resp(c, &x->resp[i]);
  cli_close(c);
  free(c);
}

TEST(pipelined_three_in_order) {
  ctx_reset(MODE_ECHO);
  run(c_pipeline);
  ASSERT_CLEAN();
  ASSERT_STREQ(X.resp[0].body, "POST /a  a");
  ASSERT_STREQ(X.resp[1].body, "POST /b  bb");
  ASSERT_STREQ(X.resp[2].body, "POST /c  ccc");
}

TEST(pipelined_async_in_order) {
  long t0 = now_ms();

  ctx_reset(MODE_ASYNC);
  run(c_pipeline);
  ASSERT_CLEAN();
  ASSERT_STREQ(X.resp[0].body, "POST /a  a");
  ASSERT_STREQ(X.resp[1].body, "POST /b  bb");
  ASSERT_STREQ(X.resp[2].body, "POST /c  ccc");
  ASSERT_TRUE(now_ms() - t0 >= 60); /* three 20 ms answers, one at a time */
}

static void c_chunked(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  cli_puts(c, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "3\r\nhel\r\n");
  usleep(20000); /* the body arrives in two reads */
  cli_puts(c, "6\r\nlo wor\r\n2\r\nld\r\n0\r\nX-Trailer: t\r\n\r\n");
  cli_resp(c, &x->resp[0]);
  cli_close(c);
  free(c);
}

TEST(chunked_body) {
  ctx_reset(MODE_ECHO);
  run(c_chunked);
  ASSERT_CLEAN();
  ASSERT_EQ(X.resp[0].status, 200);
  ASSERT_STREQ(X.resp[0].body, "POST /c  hello world");
}

static void c_too_large(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);
  char big[101];

  memset(big, 'x', 100);
  big[100] = '\0';
  cli_open(c, x);
  cli_puts(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
  cli_puts(c, big);
  cli_resp(c, &x->resp[0]);
  x->eof[0] = cli_eof(c);
  cli_close(c);
  cli_open(c, x);
  cli_puts(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n");
  cli_resp(c, &x->resp[1]);
  x->eof[1] = cli_eof(c);
  cli_close(c);
  free(c);
}

TEST(body_over_limit_413) {
  ctx_reset(MODE_ECHO);
  X.limits.max_body = 16;
  run(c_too_large);
  ASSERT_CLEAN();
  ASSERT_EQ(X.nreq, 0);
  ASSERT_EQ(X.resp[0].status, 413);
  ASSERT_STREQ(X.resp[0].body, "{\"error\":\"request body too large\"}");
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nConnection: close\r\n"));
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nContent-Type: application/json\r\n"));
  ASSERT_EQ(X.eof[0], 1);
  ASSERT_EQ(X.resp[1].status, 413);
  ASSERT_EQ(X.eof[1], 1);
}

/* Sends a GET with n "X-H<i>: v" headers (plus one value of vlen bytes). */
static void send_headers(cli_t *c, int n, size_t vlen) {
  char line[64], *v = malloc(vlen + 1);
  int i;

  cli_puts(c, "GET /h HTTP/1.1\r\nHost: x\r\n");
  for (i = 0; i < n; i++) {
    snprintf(line, sizeof line, "X-H%d: v\r\n", i);
    cli_puts(c, line);
  }
  memset(v, 'v', vlen);
  v[vlen] = '\0';
  if (vlen > 0) {
    cli_puts(c, "X-Big: ");
    cli_puts(c, v);
    cli_puts(c, "\r\n");
  }
  cli_puts(c, "\r\n");
  free(v);
}

static void c_headers(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  send_headers(c, 99, 0); /* with Host, exactly at the limit: fine */
  cli_resp(c, &x->resp[0]);
  cli_close(c);
  cli_open(c, x);
  send_headers(c, 100, 0);
  cli_resp(c, &x->resp[1]);
  x->eof[1] = cli_eof(c);
  cli_close(c);
  cli_open(c, x);
  send_headers(c, 0, 17 * 1024);
  cli_resp(c, &x->resp[2]);
  x->eof[2] = cli_eof(c);
  cli_close(c);
  free(c);
}

TEST(header_limits_431) {
  ctx_reset(MODE_ECHO);
  run(c_headers);
  ASSERT_CLEAN();
  ASSERT_EQ(X.resp[0].status, 200);
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nX-Count: 100\r\n"));
  ASSERT_EQ(X.resp[1].status, 431);
  ASSERT_TRUE(HAS(X.resp[1].body, "\"error\""));
  ASSERT_EQ(X.eof[1], 1);
  ASSERT_EQ(X.resp[2].status, 431);
  ASSERT_EQ(X.eof[2], 1);
  ASSERT_EQ(X.nreq, 1);
}

static void c_slow(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);
  long t0;

  cli_open(c, x);
  t0 = now_ms();
  cli_puts(c, "POST / HTTP/1.1\r\nHost: x\r\n");
  usleep(100000);
  cli_puts(c, "X-More: 1\r\n"); /* trickling doesn't restart the clock */
  cli_resp(c, &x->resp[0]);
  x->elapsed_ms = now_ms() - t0;
  x->eof[0] = cli_eof(c);
  cli_close(c);
  free(c);
}

TEST(slow_client_408) {
  ctx_reset(MODE_ECHO);
  X.limits.read_timeout_ms = 200;
  run(c_slow);
  ASSERT_CLEAN();
  ASSERT_EQ(X.resp[0].status, 408);
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nConnection: close\r\n"));
  ASSERT_TRUE(X.elapsed_ms >= 180 && X.elapsed_ms < 1500);
  ASSERT_EQ(X.eof[0], 1);
  ASSERT_EQ(X.nreq, 0);
}

static void c_garbage(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  cli_send(c, "\x16\x03\x01\x00\xff garbage\r\n\r\n", 17);
  cli_resp(c, &x->resp[0]);
  x->eof[0] = cli_eof(c);
  cli_close(c);
  free(c);
}

TEST(garbage_400_and_close) {
  ctx_reset(MODE_ECHO);
  run(c_garbage);
  ASSERT_CLEAN();
  ASSERT_EQ(X.resp[0].status, 400);
  ASSERT_STREQ(X.resp[0].body, "{\"error\":\"bad request\"}");
  ASSERT_EQ(X.eof[0], 1);
}

static void c_disconnect(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  /* The second request waits behind the held first one when we leave. */
  cli_puts(c, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
              "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  uv_sem_wait(&x->sem);
  cli_close(c);
  usleep(300000); /* the loop notices, then answers the gone request */
  free(c);
}

TEST(disconnect_while_held) {
  ctx_reset(MODE_HOLD);
  run(c_disconnect);
  ASSERT_CLEAN();
  ASSERT_EQ(X.nreq, 1);
  ASSERT_EQ(X.gone_seen, 1);
  ASSERT_EQ(X.respond_rc, 0);
}

static void c_async(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);
  long t0 = now_ms();

  cli_open(c, x);
  cli_puts(c, "POST /async HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nlate");
  cli_resp(c, &x->resp[0]);
  x->elapsed_ms = now_ms() - t0;
  cli_puts(c, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
  cli_resp(c, &x->resp[1]);
  cli_close(c);
  free(c);
}

TEST(async_answer_from_timer) {
  ctx_reset(MODE_ASYNC);
  run(c_async);
  ASSERT_CLEAN();
  ASSERT_EQ(X.resp[0].status, 200);
  ASSERT_STREQ(X.resp[0].body, "POST /async  late");
  ASSERT_TRUE(X.elapsed_ms >= 18);
  ASSERT_STREQ(X.resp[1].body, "GET /again  ");
}

static void c_idle(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);
  long t0;

  cli_open(c, x);
  cli_puts(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cli_resp(c, &x->resp[0]);
  t0 = now_ms();
  x->eof[0] = cli_eof(c);
  x->elapsed_ms = now_ms() - t0;
  cli_close(c);
  free(c);
}

TEST(idle_keepalive_closed) {
  ctx_reset(MODE_ECHO);
  X.limits.idle_timeout_ms = 200;
  run(c_idle);
  ASSERT_CLEAN();
  ASSERT_EQ(X.resp[0].status, 200);
  ASSERT_EQ(X.eof[0], 1);
  ASSERT_TRUE(X.elapsed_ms >= 150 && X.elapsed_ms < 1500);
}

static void c_http10(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  cli_puts(c, "GET /a HTTP/1.0\r\n\r\n");
  cli_resp(c, &x->resp[0]);
  x->eof[0] = cli_eof(c);
  cli_close(c);
  cli_open(c, x);
  cli_puts(c, "GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  cli_resp(c, &x->resp[1]);
  cli_puts(c, "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  cli_resp(c, &x->resp[2]);
  x->eof[2] = cli_eof(c);
  cli_close(c);
  free(c);
}

TEST(http10_and_connection_close) {
  ctx_reset(MODE_ECHO);
  run(c_http10);
  ASSERT_CLEAN();
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nConnection: close\r\n"));
  ASSERT_EQ(X.eof[0], 1);
  ASSERT_TRUE(HAS(X.resp[1].head, "\r\nConnection: keep-alive\r\n"));
  ASSERT_STREQ(X.resp[2].body, "GET /c  ");
  ASSERT_TRUE(HAS(X.resp[2].head, "\r\nConnection: close\r\n"));
  ASSERT_EQ(X.eof[2], 1);
}

static void c_expect(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  cli_puts(c, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
              "Content-Length: 5\r\n\r\n");
  cli_resp(c, &x->resp[0]);
  cli_puts(c, "hello");
  cli_resp(c, &x->resp[1]);
  cli_close(c);
  free(c);
}

TEST(expect_100_continue) {
  ctx_reset(MODE_ECHO);
  run(c_expect);
  ASSERT_CLEAN();
  ASSERT_EQ(X.resp[0].status, 100);
  ASSERT_EQ(X.resp[1].status, 200);
  ASSERT_STREQ(X.resp[1].body, "POST /e  hello");
}

static void c_close_held(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  cli_puts(c, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
  uv_sem_wait(&x->sem);
  x->stop_sent = 1;
  uv_async_send(&x->stop); /* the server closes with our request held */
  cli_resp(c, &x->resp[0]);
  x->eof[0] = cli_eof(c);
  cli_close(c);
  free(c);
}

TEST(close_server_with_held_request) {
  ctx_reset(MODE_HOLD_CLOSE);
  run(c_close_held);
  ASSERT_CLEAN();
  ASSERT_EQ(X.done_before_answer, 0);
  ASSERT_EQ(X.resp[0].status, 200);
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nConnection: close\r\n"));
  ASSERT_EQ(X.eof[0], 1);
}

static void c_bad_answer(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x);
  cli_puts(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cli_resp(c, &x->resp[0]);
  x->eof[0] = cli_eof(c);
  cli_close(c);
  free(c);
}

TEST(header_injection_refused) {
  ctx_reset(MODE_BAD);
  run(c_bad_answer);
  ASSERT_CLEAN();
  ASSERT_EQ(X.respond_rc, UV_EINVAL);
  ASSERT_EQ(X.resp[0].status, 500);
  ASSERT_TRUE(!HAS(X.resp[0].head, "Set-Cookie"));
  ASSERT_EQ(X.eof[0], 1);
}

static void c_ipv6(ctx_t *x) {
  cli_t *c = malloc(sizeof *c);

  cli_open(c, x); /* IPv4 onto a dual-stack socket: ::ffff:127.0.0.1 */
  cli_puts(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cli_resp(c, &x->resp[0]);
  cli_close(c);
  cli_open_at(c, "::1", x->port);
  cli_puts(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  cli_resp(c, &x->resp[1]);
  cli_close(c);
  free(c);
}

TEST(ipv6_and_mapped_peer) {
  ctx_reset(MODE_ECHO);
  X.host = "::";
  run(c_ipv6);
  ASSERT_CLEAN();
  ASSERT_TRUE(HAS(X.resp[0].head, "\r\nX-Peer: 127.0.0.1\r\n"));
  ASSERT_TRUE(HAS(X.resp[1].head, "\r\nX-Peer: ::1\r\n"));
}

/* Mangled and random requests, each followed by a half-close: the server
 * must neither crash nor leak (ASan), whatever it answers. */
static void c_fuzz(ctx_t *x) {
  static const char *seeds[] = {
    "POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX: y\r\n\r\nbody",
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    "4\r\nbody\r\n0\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
  };
  cli_t *c = malloc(sizeof *c);
  char buf[512];
  unsigned seed = 12345;
  int i, j;

  for (i = 0; i < 300; i++) {
    const char *s = seeds[i % 4];
    size_t n = strlen(s);

    memcpy(buf, s, n);
    for (j = 0; j < 1 + i % 5; j++) { /* flip, cut, or randomize bytes */
      seed = seed * 1103515245u + 12345u;
      buf[(seed >> 8) % n] = (char) (seed >> 16);
    }
    if (i % 7 == 0)
      n = (seed >> 4) % n;
    if (i % 11 == 0)
      for (j = 0; j < (int) n; j++)
        buf[j] = (char) ((seed = seed * 1103515245u + 12345u) >> 16);
    cli_open(c, x);
    cli_send(c, buf, n);
    shutdown(c->fd, SHUT_WR);
    while (cli_fill(c) > 0)
      c->len = 0;
    cli_close(c);
  }
  free(c);
}

TEST(fuzz_no_crash) {
  ctx_reset(MODE_ECHO);
  run(c_fuzz);
  ASSERT_CLEAN();
}

RUN_TESTS("http_server",
          T(post_content_length), T(keep_alive_two_requests),
          T(pipelined_three_in_order), T(pipelined_async_in_order),
          T(chunked_body), T(body_over_limit_413), T(header_limits_431),
          T(slow_client_408), T(garbage_400_and_close),
          T(disconnect_while_held), T(async_answer_from_timer),
          T(idle_keepalive_closed), T(http10_and_connection_close),
          T(expect_100_continue), T(close_server_with_held_request),
          T(header_injection_refused), T(ipv6_and_mapped_peer),
          T(fuzz_no_crash))
