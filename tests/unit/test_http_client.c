/* test_http_client.c: unit tests for core/http_client against a real local
 * HTTP/1.1 server (python3 ThreadingHTTPServer, started once as a
 * subprocess; its routes are in SERVER_PY).  Every test runs its own loop and
 * client and ends with hw_hc_close and uv_loop_close()==0. */
#include "http_client.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>

static const char SERVER_PY[] =
"import sys, time, threading\n"
"from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer\n"
"from urllib.parse import urlparse, parse_qs\n"
"seen = {}; lock = threading.Lock(); conns = [0]\n"
"class H(BaseHTTPRequestHandler):\n"
"  protocol_version = 'HTTP/1.1'\n"
"  def log_message(self, *a): pass\n"
"  def setup(self):\n"
"    with lock: conns[0] += 1\n"
"    BaseHTTPRequestHandler.setup(self)\n"
"  def reply(self, code, body=b'', hdrs=(), length=True):\n"
"    self.send_response(code)\n"
"    for k, v in hdrs: self.send_header(k, v)\n"
"    if length: self.send_header('Content-Length', str(len(body)))\n"
"    else: self.send_header('Connection', 'close')\n"
"    self.end_headers()\n"
"    if self.command != 'HEAD': self.wfile.write(body)\n"
"  def any(self):\n"
"    u = urlparse(self.path)\n"
"    q = {k: v[0] for k, v in parse_qs(u.query).items()}\n"
"    n = int(self.headers.get('Content-Length') or 0)\n"
"    body = self.rfile.read(n) if n else b''\n"
"    try: self.route(u.path, q, body)\n"
"    except (BrokenPipeError, ConnectionResetError): pass\n"
"  def route(self, p, q, body):\n"
"    h = self.headers\n"
"    if p == '/echo':\n"
"      out = '%s %s %s %s|' % (self.command, h.get('X-Test', '-'),\n"
"        h.get('Expect', '-'), h.get('Content-Length', '-'))\n"
"      self.reply(200, out.encode() + body,\n"
"        [('X-Mixed-Case', '  Yes  '), ('Set-Cookie', 'a=1')])\n"
"    elif p == '/delay':\n"
"      time.sleep(int(q['ms']) / 1000); self.reply(200, b'late')\n"
"    elif p == '/flaky':\n"
"      with lock: seen[q['id']] = c = seen.get(q['id'], 0) + 1\n"
"      if c <= int(q['n']):\n"
"        ra = [('Retry-After', q['ra'])] if 'ra' in q else []\n"
"        self.reply(int(q.get('code', 503)), b'busy', ra)\n"
"      else: self.reply(200, b'ok')\n"
"    elif p == '/big':\n"
"      self.reply(200, b'x' * int(q['n']), length=q.get('len') != '0')\n"
"    elif p == '/idleclose':\n"
"      self.reply(200, b'bye')\n"
"      c = self.connection\n"
"      threading.Timer(0.1, lambda: c.shutdown(2)).start()\n"
"    elif p == '/conns':\n"
"      with lock: n = conns[0]\n"
"      self.reply(200, str(n).encode())\n"
"    elif p == '/redir':\n"
"      self.reply(302, b'moved', [('Location', '/echo')])\n"
"    else: self.reply(404, b'nf')\n"
"  do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = any\n"
"class S(ThreadingHTTPServer):\n"
"  daemon_threads = True; request_queue_size = 1024\n"
"  def handle_error(self, *a): pass\n"
"s = S(('127.0.0.1', 0), H)\n"
"print(s.server_address[1], flush=True)\n"
"s.serve_forever()\n";

static pid_t srv_pid;
static int srv_port;

static void server_stop(void) {
  if (srv_pid > 0) {
    kill(srv_pid, SIGTERM);
    waitpid(srv_pid, NULL, 0);
    srv_pid = 0;
  }
  curl_global_cleanup();           /* hw_hc_init did the global init */
}

/* Starts the python server once; its first stdout line is its port. */
static int server_port(void) {
  int fd[2];
  FILE *f;

  if (srv_port) return srv_port;
  alarm(120);                      /* the whole suite; a hang is a failure */
  if (pipe(fd) < 0 || (srv_pid = fork()) < 0) return 0;
  if (srv_pid == 0) {
    dup2(fd[1], 1);
    close(fd[0]);
    close(fd[1]);
    execlp("python3", "python3", "-c", SERVER_PY, (char *) NULL);
    _exit(127);
  }
  close(fd[1]);
  atexit(server_stop);
  f = fdopen(fd[0], "r");
  if (f == NULL || fscanf(f, "%d", &srv_port) != 1) srv_port = 0;
  if (f) fclose(f);
  return srv_port;
}

/* A port nothing listens on: bind an ephemeral one, then close it. */
static int dead_port(void) {
  struct sockaddr_in a = { .sin_family = AF_INET };
  socklen_t len = sizeof a;
  int s = socket(AF_INET, SOCK_STREAM, 0), port;

  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, (struct sockaddr *) &a, sizeof a);
  getsockname(s, (struct sockaddr *) &a, &len);
  port = ntohs(a.sin_port);
  close(s);
  return port;
}

/* What a done callback saw (the response itself dies with the callback). */
typedef struct {
  int calls, error, status, nattempts, att_status[8], nheaders;
  char errmsg[512], body[256], mixed[64], loc[64], clen[32];
  size_t body_len;
  double seconds;
  int *in_call;                    /* set while inside start/cancel */
  int sync_calls;                  /* callbacks fired inside such a call */
} got_t;

static void copy_header(const hw_hc_header_t *h, const char *name, char *out,
                        size_t n) {
  if (strcmp(h->name, name) == 0) snprintf(out, n, "%s", h->value);
}

static void on_done(hw_hc_response_t *r, void *arg) {
  got_t *g = arg;
  int i;

  g->calls++;
  if (g->in_call && *g->in_call) g->sync_calls++;
  g->error = r->error;
  g->status = r->status;
  g->nattempts = r->nattempts;
  for (i = 0; i < r->nattempts && i < 8; i++)
    g->att_status[i] = r->attempts[i].status;
  snprintf(g->errmsg, sizeof g->errmsg, "%s", r->errmsg);
  snprintf(g->body, sizeof g->body, "%s", r->body);
  g->body_len = r->body_len;
  g->nheaders = r->nheaders;
  g->seconds = r->seconds;
  for (i = 0; i < r->nheaders; i++) {
    copy_header(&r->headers[i], "x-mixed-case", g->mixed, sizeof g->mixed);
    copy_header(&r->headers[i], "location", g->loc, sizeof g->loc);
    copy_header(&r->headers[i], "content-length", g->clen, sizeof g->clen);
  }
}

typedef struct { uv_loop_t loop; hw_hc_t *hc; int in_call; } fx_t;

static int fx_open(fx_t *f) {
  memset(f, 0, sizeof *f);
  if (server_port() == 0 || uv_loop_init(&f->loop) != 0) return -1;
  return hw_hc_init(&f->loop, &f->hc);
}

/* Closes the client, runs the loop dry and returns uv_loop_close(). */
static int fx_close(fx_t *f) {
  hw_hc_close(f->hc);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return uv_loop_close(&f->loop);
}

static void url(char *out, size_t n, const char *path) {
  snprintf(out, n, "http://127.0.0.1:%d%s", server_port(), path);
}

/* Starts one request while flagging "inside a call" for sync detection. */
static int start(fx_t *f, hw_hc_request_t *rq, got_t *g, hw_hc_xfer_t **x) {
  int rc;

  g->in_call = &f->in_call;
  f->in_call = 1;
  rc = hw_hc_start(f->hc, rq, on_done, g, x);
  f->in_call = 0;
  return rc;
}

/* One request, run to completion on a fresh loop. */
static int run_one(hw_hc_request_t *rq, got_t *g) {
  fx_t f;

  memset(g, 0, sizeof *g);
  if (fx_open(&f) < 0 || start(&f, rq, g, NULL) < 0) return -1;
  uv_run(&f.loop, UV_RUN_DEFAULT);
  return fx_close(&f);
}

/* ---- tests -------------------------------------------------------------- */

TEST(methods_headers_body) {
  static const char *m[] = { "GET", "POST", "PUT", "PATCH", "DELETE" };
  char u[128], hdr[5][64], body[5][32], want[128];
  const char *hl[5][2];
  hw_hc_request_t rq[5];
  got_t g[5];
  fx_t f;
  int i;

  ASSERT_EQ(fx_open(&f), 0);
  url(u, sizeof u, "/echo");
  for (i = 0; i < 5; i++) {
    memset(&rq[i], 0, sizeof rq[i]);
    memset(&g[i], 0, sizeof g[i]);
    snprintf(hdr[i], sizeof hdr[i], "X-Test: v-%s", m[i]);
    snprintf(body[i], sizeof body[i], "payload-%s", m[i]);
    hl[i][0] = hdr[i];
    hl[i][1] = NULL;
    rq[i].method = m[i];
    rq[i].url = u;
    rq[i].headers = hl[i];
    if (i > 0) {
      rq[i].body = body[i];
      rq[i].body_len = strlen(body[i]);
    }
    ASSERT_EQ(start(&f, &rq[i], &g[i], NULL), 0);
    memset(hdr[i], 0, sizeof hdr[i]);   /* the request was copied */
    memset(body[i], 0, sizeof body[i]);
  }
  ASSERT_EQ(hw_hc_active(f.hc), 5);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  ASSERT_EQ(hw_hc_active(f.hc), 0);
  for (i = 0; i < 5; i++) {
    ASSERT_EQ(g[i].calls, 1);
    ASSERT_EQ(g[i].sync_calls, 0);
    ASSERT_EQ(g[i].error, 0);
    ASSERT_EQ(g[i].status, 200);
    if (i == 0) snprintf(want, sizeof want, "GET v-GET - -|");
    else snprintf(want, sizeof want, "%s v-%s - %d|payload-%s", m[i], m[i],
                  (int) strlen("payload-") + (int) strlen(m[i]), m[i]);
    ASSERT_STREQ(g[i].body, want);
    ASSERT_STREQ(g[i].mixed, "Yes");  /* name lower-cased, value trimmed */
    ASSERT_EQ(g[i].nattempts, 1);
  }
  ASSERT_EQ(fx_close(&f), 0);
}

TEST(head_and_empty_post) {
  char u[128];
  hw_hc_request_t rq = { .method = "HEAD", .url = u };
  got_t g;

  url(u, sizeof u, "/echo");
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.status, 200);
  ASSERT_EQ(g.body_len, 0);
  ASSERT_STREQ(g.body, "");
  ASSERT_TRUE(atoi(g.clen) > 0);
  rq.method = "POST";              /* no body: still Content-Length: 0 */
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_STREQ(g.body, "POST - - 0|");
}

TEST(connection_refused) {
  char u[128], want[160];
  hw_hc_request_t rq = { .method = "GET", .url = u };
  got_t g;

  snprintf(u, sizeof u, "http://127.0.0.1:%d/x", dead_port());
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.calls, 1);
  ASSERT_EQ(g.error, UV_ECONNREFUSED);
  ASSERT_EQ(g.status, 0);
  snprintf(want, sizeof want, "GET %s: ", u);
  ASSERT_EQ(strncmp(g.errmsg, want, strlen(want)), 0);
  ASSERT_TRUE(strstr(g.errmsg, "Connection refused") != NULL);
  printf("  (%s)\n", g.errmsg);
}

TEST(tls_failure) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u };
  got_t g;

  snprintf(u, sizeof u, "https://127.0.0.1:%d/echo", server_port());
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.error, UV_EPROTO);
  ASSERT_TRUE(strncmp(g.errmsg, "GET https://127.0.0.1:", 22) == 0);
  printf("  (%s)\n", g.errmsg);
}

TEST(timeout) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u, .timeout = 0.3 };
  uint64_t t0 = uv_hrtime();
  got_t g;

  url(u, sizeof u, "/delay?ms=2000");
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.error, UV_ETIMEDOUT);
  ASSERT_TRUE(strstr(g.errmsg, ": timeout after 300 ms") != NULL);
  ASSERT_TRUE(strncmp(g.errmsg, "GET http://", 11) == 0);
  ASSERT_TRUE(g.seconds >= 0.29 && g.seconds < 1.0);
  ASSERT_TRUE(uv_hrtime() - t0 < 1000000000ULL);
}

TEST(retry_503_then_200) {
  char u[128];
  hw_hc_request_t rq = { .method = "POST", .url = u, .body = "b",
                         .body_len = 1, .retries = 3 };
  got_t g;

  url(u, sizeof u, "/flaky?id=a&n=1");
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.error, 0);
  ASSERT_EQ(g.status, 200);
  ASSERT_STREQ(g.body, "ok");
  ASSERT_EQ(g.nattempts, 2);
  ASSERT_EQ(g.att_status[0], 503);
  ASSERT_EQ(g.att_status[1], 200);
  ASSERT_TRUE(g.seconds >= 0.07 && g.seconds < 0.6);  /* 100 ms +-25% */
}

TEST(retry_exhausted_and_off) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u, .retries = 2 };
  got_t g;

  url(u, sizeof u, "/flaky?id=b&n=9&code=429");
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.error, 0);           /* a status is not an error */
  ASSERT_EQ(g.status, 429);
  ASSERT_EQ(g.nattempts, 3);
  ASSERT_TRUE(g.seconds >= 0.22 && g.seconds < 1.0);  /* 100 + 200 ms */
  rq.retries = 0;
  url(u, sizeof u, "/flaky?id=c&n=1");
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.status, 503);
  ASSERT_EQ(g.nattempts, 1);
  rq.retries = 1;                  /* 404 is final */
  url(u, sizeof u, "/nope");
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.status, 404);
  ASSERT_EQ(g.nattempts, 1);
}

TEST(retry_connection_error) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u, .retries = 1 };
  got_t g;

  snprintf(u, sizeof u, "http://127.0.0.1:%d/x", dead_port());
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.error, UV_ECONNREFUSED);
  ASSERT_EQ(g.nattempts, 2);
  ASSERT_EQ(g.att_status[0], 0);
}

TEST(retry_after_honoured) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u, .retries = 1 };
  got_t g;

  url(u, sizeof u, "/flaky?id=d&n=1&ra=1");
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.status, 200);
  ASSERT_EQ(g.nattempts, 2);
  ASSERT_TRUE(g.seconds >= 0.95 && g.seconds < 2.0);
}

TEST(response_too_large) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u, .max_response = 1000 };
  got_t g;

  url(u, sizeof u, "/big?n=100000");           /* Content-Length path */
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.error, UV_EMSGSIZE);
  ASSERT_TRUE(strstr(g.errmsg, ": response larger than 1000 bytes") != NULL);
  url(u, sizeof u, "/big?n=100000&len=0");     /* streamed, no length */
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.error, UV_EMSGSIZE);
  ASSERT_TRUE(strstr(g.errmsg, ": response larger than 1000 bytes") != NULL);
  url(u, sizeof u, "/big?n=1000&len=0");       /* exactly the limit */
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.error, 0);
  ASSERT_EQ(g.body_len, 1000);
}

TEST(redirects) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u };
  got_t g;

  url(u, sizeof u, "/redir");
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.status, 302);
  ASSERT_STREQ(g.loc, "/echo");
  rq.follow = 1;
  ASSERT_EQ(run_one(&rq, &g), 0);
  ASSERT_EQ(g.status, 200);
  ASSERT_STREQ(g.loc, "");         /* only the final response's headers */
  ASSERT_STREQ(g.mixed, "Yes");
}

TEST(concurrent_200) {
  enum { N = 200 };
  static got_t g[N];
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u };
  uint64_t t0;
  fx_t f;
  int i;

  ASSERT_EQ(fx_open(&f), 0);
  url(u, sizeof u, "/delay?ms=300");
  memset(g, 0, sizeof g);
  t0 = uv_hrtime();
  for (i = 0; i < N; i++) ASSERT_EQ(start(&f, &rq, &g[i], NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  for (i = 0; i < N; i++) {
    ASSERT_EQ(g[i].calls, 1);
    ASSERT_EQ(g[i].status, 200);
  }
  printf("  (%d x 300 ms in %.3f s)\n", N, (double) (uv_hrtime() - t0) / 1e9);
  ASSERT_TRUE(uv_hrtime() - t0 < 2000000000ULL);
  ASSERT_EQ(fx_close(&f), 0);
}

static void on_stop_timer(uv_timer_t *t) {
  uv_stop(t->loop);
}

/* Runs the loop for about ms milliseconds. */
static void run_for(uv_loop_t *loop, uint64_t ms) {
  uv_timer_t t;

  uv_timer_init(loop, &t);
  uv_timer_start(&t, on_stop_timer, ms, 0);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *) &t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);     /* runs the close callback */
}

static void on_done_close(hw_hc_response_t *r, void *arg) {
  fx_t *f = arg;

  f->in_call++;                    /* counts calls */
  hw_hc_close(f->hc);              /* closing from inside a callback */
}

TEST(close_in_flight) {
  char u[128], u2[128];
  hw_hc_request_t rq = { .method = "GET", .url = u };
  hw_hc_request_t rw = { .method = "GET", .url = u2, .retries = 5 };
  got_t g[3];
  fx_t f, f2;
  int i;

  ASSERT_EQ(fx_open(&f), 0);
  memset(g, 0, sizeof g);
  url(u, sizeof u, "/delay?ms=2000");
  url(u2, sizeof u2, "/flaky?id=e&n=99&ra=30"); /* will wait 30 s */
  for (i = 0; i < 2; i++) ASSERT_EQ(start(&f, &rq, &g[i], NULL), 0);
  ASSERT_EQ(start(&f, &rw, &g[2], NULL), 0);
  run_for(&f.loop, 300);           /* the 503 arrives, a retry waits */
  ASSERT_EQ(hw_hc_active(f.hc), 3);
  f.in_call = 1;
  hw_hc_close(f.hc);
  f.in_call = 0;
  ASSERT_EQ(g[0].calls + g[1].calls + g[2].calls, 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  for (i = 0; i < 3; i++) {
    ASSERT_EQ(g[i].calls, 1);
    ASSERT_EQ(g[i].error, UV_ECANCELED);
  }
  ASSERT_EQ(g[2].nattempts, 1);    /* it was waiting to retry */
  ASSERT_EQ(uv_loop_close(&f.loop), 0);

  ASSERT_EQ(fx_open(&f2), 0);      /* close from a done callback */
  url(u, sizeof u, "/echo");
  ASSERT_EQ(hw_hc_start(f2.hc, &rq, on_done_close, &f2, NULL), 0);
  uv_run(&f2.loop, UV_RUN_DEFAULT);
  ASSERT_EQ(f2.in_call, 1);
  ASSERT_EQ(uv_loop_close(&f2.loop), 0);
}

TEST(invalid_requests) {
  hw_hc_request_t rq = { .method = "GE T", .url = "http://127.0.0.1/" };
  const char *bad[] = { "X-A: 1\r\nX-B: 2", NULL };
  got_t g;
  fx_t f;

  memset(&g, 0, sizeof g);
  ASSERT_EQ(fx_open(&f), 0);
  ASSERT_EQ(hw_hc_start(f.hc, &rq, on_done, &g, NULL), UV_EINVAL);
  rq.method = "GET";
  rq.url = NULL;
  ASSERT_EQ(hw_hc_start(f.hc, &rq, on_done, &g, NULL), UV_EINVAL);
  rq.url = "http://127.0.0.1/ x";
  ASSERT_EQ(hw_hc_start(f.hc, &rq, on_done, &g, NULL), UV_EINVAL);
  rq.url = "http://127.0.0.1/";
  rq.headers = bad;
  ASSERT_EQ(hw_hc_start(f.hc, &rq, on_done, &g, NULL), UV_EINVAL);
  rq.headers = NULL;
  rq.url = "ftp://127.0.0.1/";     /* refused by curl, reported async */
  ASSERT_EQ(hw_hc_start(f.hc, &rq, on_done, &g, NULL), 0);
  ASSERT_EQ(g.calls, 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  ASSERT_EQ(g.calls, 1);
  ASSERT_EQ(g.error, UV_EINVAL);
  ASSERT_EQ(fx_close(&f), 0);
}

/* TCP connections the server has accepted so far (on a fresh connection of
 * a throw-away client, so the count is not disturbed by reuse). */
static int server_conns(void) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u, .allow_private = 1 };
  got_t g;

  url(u, sizeof u, "/conns");
  if (run_one(&rq, &g) != 0 || g.status != 200) return -1;
  return atoi(g.body);
}

static void on_done_next(hw_hc_response_t *r, void *arg);

typedef struct { fx_t *f; hw_hc_request_t *rq; got_t g; int left; } chain_t;

/* Starts the next call of a chain from the done callback of the last one. */
static void on_done_next(hw_hc_response_t *r, void *arg) {
  chain_t *c = arg;

  on_done(r, &c->g);
  if (r->error != 0 || r->status != 200 || --c->left == 0) return;
  if (hw_hc_start(c->f->hc, c->rq, on_done_next, c, NULL) != 0) c->left = -1;
}

/* Keep-alive: calls to one host share a connection from the multi handle's
 * cache.  50 sequential calls (each started from the previous one's done
 * callback), then 3 rounds of 20 concurrent ones, must open far fewer
 * connections than calls. */
TEST(connection_reuse) {
  char u[128];
  hw_hc_request_t rq = { .method = "POST", .url = u, .body = "x",
                         .body_len = 1 };
  chain_t c;
  got_t g[20];
  fx_t f;
  int before, after, i, round;

  ASSERT_EQ(fx_open(&f), 0);
  url(u, sizeof u, "/echo");
  before = server_conns();
  ASSERT_TRUE(before >= 0);
  memset(&c, 0, sizeof c);
  c.f = &f;
  c.rq = &rq;
  c.left = 50;
  ASSERT_EQ(hw_hc_start(f.hc, &rq, on_done_next, &c, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  ASSERT_EQ(c.left, 0);
  ASSERT_EQ(c.g.calls, 50);
  ASSERT_EQ(c.g.status, 200);
  after = server_conns();
  printf("  (50 sequential calls: %d connections)\n", after - before - 1);
  ASSERT_TRUE(after - before - 1 <= 2);   /* -1: the /conns probe itself */
  before = after;
  for (round = 0; round < 3; round++) {
    memset(g, 0, sizeof g);
    for (i = 0; i < 20; i++) ASSERT_EQ(start(&f, &rq, &g[i], NULL), 0);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    for (i = 0; i < 20; i++) ASSERT_EQ(g[i].status, 200);
  }
  after = server_conns();
  printf("  (3 x 20 concurrent calls: %d connections)\n", after - before - 1);
  ASSERT_TRUE(after - before - 1 <= 25);
  ASSERT_EQ(fx_close(&f), 0);
}

static void count_polls(uv_handle_t *h, void *arg) {
  uv_handle_t **seen = arg;

  if (h->type == UV_POLL && !uv_is_closing(h)) {
    if (seen[0] == NULL) seen[0] = h;
    seen[1] = (uv_handle_t *) ((uintptr_t) seen[1] + 1);
  }
}

/* The watcher of a kept-alive connection stays (parked, not keeping the
 * loop alive) between calls and is the same one for the next call: no
 * close and re-add per call. */
TEST(watcher_kept_between_calls) {
  char u[128];
  hw_hc_request_t rq = { .method = "GET", .url = u };
  uv_handle_t *w1[2] = { NULL, NULL }, *w2[2] = { NULL, NULL };
  got_t g;
  fx_t f;

  ASSERT_EQ(fx_open(&f), 0);
  url(u, sizeof u, "/echo");
  memset(&g, 0, sizeof g);
  ASSERT_EQ(start(&f, &rq, &g, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);  /* returns: a parked watcher is unref'd */
  ASSERT_EQ(g.status, 200);
  uv_walk(&f.loop, count_polls, w1);
  ASSERT_EQ((uintptr_t) w1[1], 1);
  memset(&g, 0, sizeof g);
  ASSERT_EQ(start(&f, &rq, &g, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  ASSERT_EQ(g.status, 200);
  uv_walk(&f.loop, count_polls, w2);
  ASSERT_EQ((uintptr_t) w2[1], 1);
  ASSERT_TRUE(w1[0] == w2[0]);
  ASSERT_EQ(fx_close(&f), 0);
}

static double cpu_seconds(void) {
  struct rusage ru;

  getrusage(RUSAGE_SELF, &ru);
  return (double) ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The server closes a kept-alive connection while it idles in the cache:
 * its parked watcher turns readable once and must stop (not spin the loop),
 * and the next call gets a fresh connection and succeeds. */
TEST(idle_connection_closed_by_server) {
  char u[128], u2[128];
  hw_hc_request_t rq = { .method = "GET", .url = u };
  got_t g;
  fx_t f;
  double cpu;
  int before, after;

  ASSERT_EQ(fx_open(&f), 0);
  url(u, sizeof u, "/idleclose");
  url(u2, sizeof u2, "/echo");
  before = server_conns();
  memset(&g, 0, sizeof g);
  ASSERT_EQ(start(&f, &rq, &g, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  ASSERT_EQ(g.status, 200);
  ASSERT_STREQ(g.body, "bye");
  cpu = cpu_seconds();
  run_for(&f.loop, 600);           /* the server closes it after 100 ms */
  cpu = cpu_seconds() - cpu;
  printf("  (CPU while the closed connection idled: %.3f s)\n", cpu);
  ASSERT_TRUE(cpu < 0.1);          /* idle: ~0; a spinning watcher: 0.2+ s */
  rq.url = u2;
  memset(&g, 0, sizeof g);
  ASSERT_EQ(start(&f, &rq, &g, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  ASSERT_EQ(g.error, 0);
  ASSERT_EQ(g.status, 200);
  after = server_conns();
  ASSERT_EQ(after - before - 1, 2);  /* the closed one, then a fresh one */
  ASSERT_EQ(fx_close(&f), 0);
}

RUN_TESTS("http_client",
  T(methods_headers_body), T(head_and_empty_post), T(connection_refused),
  T(tls_failure), T(timeout), T(retry_503_then_200),
  T(retry_exhausted_and_off), T(retry_connection_error),
  T(retry_after_honoured), T(response_too_large), T(redirects),
  T(concurrent_200), T(close_in_flight), T(invalid_requests),
  T(connection_reuse), T(watcher_kept_between_calls),
  T(idle_connection_closed_by_server))
