/* rategen: a constant-rate HTTP/1.1 load generator for the bench (Debian has
 * no wrk2).  Request j is due at start + j / RATE and goes on connection
 * j % CONNS (keep-alive, one request in flight per connection).  A request
 * whose connection is still busy at its due time is sent as soon as the
 * answer before it arrives, and its latency is counted from its due time,
 * not from when it went out: a stalled server shows up in the percentiles
 * instead of silently lowering the rate (no coordinated omission).
 *
 *   rategen HOST PORT PATH RATE CONNS SECONDS [BODYFILE]
 *
 * POSTs BODYFILE (default {"order_id":"A1","amount":12.5}) as JSON; prints
 * one line: RESULT rps=.. p50_ms=.. p90_ms=.. p99_ms=.. p999_ms=.. max_ms=..
 * reqs=.. non2xx=.. errs=.. late_ms=.. (late_ms: how far behind schedule the
 * last send was, so a rate the server cannot keep is visible).  Loopback use
 * only; built by tests/bench/run.sh. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  int fd;
  uint64_t next;    /* index of this connection's next request (j) */
  int busy;         /* a request is in flight */
  uint64_t due_ns;  /* due time of the request in flight */
  size_t sent;      /* bytes of it written */
  char in[65536];
  size_t inlen;
} conn_t;

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t) t.tv_sec * 1000000000u + (uint64_t) t.tv_nsec;
}

static char *req;
static size_t reqlen;
static double rate;
static int nconn;
static uint64_t start, stop;
static uint32_t *lat; /* microseconds */
static size_t nlat, caplat;
static long non2xx, errs;
static struct sockaddr_in addr;

static uint64_t due_of(uint64_t j) { return start + (uint64_t) ((double) j * 1e9 / rate); }

static int open_conn(conn_t *c, int ep) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET};
  int one = 1;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0)
    return -1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->fd, (struct sockaddr *) &addr, sizeof addr) != 0 && errno != EINPROGRESS)
    return -1;
  ev.data.ptr = c;
  c->busy = 0;
  c->inlen = 0;
  return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void try_send(conn_t *c) {
  while (c->busy && c->sent < reqlen) {
    ssize_t n = write(c->fd, req + c->sent, reqlen - c->sent);
    if (n < 0) {
      if (errno != EAGAIN)
        errs++;
      return;
    }
    c->sent += (size_t) n;
  }
}

/* Starts this connection's next request if it is due. */
static void maybe_start(conn_t *c, uint64_t t) {
  if (c->busy || due_of(c->next) > t || due_of(c->next) >= stop)
    return;
  c->due_ns = due_of(c->next);
  c->next += (uint64_t) nconn;
  c->busy = 1;
  c->sent = 0;
  try_send(c);
}

/* One whole answer in c->in: record it; returns its length or 0. */
static size_t parse_answer(conn_t *c) {
  char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
  size_t hlen, blen = 0;
  char *p;
  if (end == NULL)
    return 0;
  hlen = (size_t) (end - c->in) + 4;
  for (p = c->in; p < end; p++) {
    if ((*p == '\n') && strncasecmp(p + 1, "content-length:", 15) == 0) {
      blen = strtoul(p + 16, NULL, 10);
      break;
    }
  }
  if (c->inlen < hlen + blen)
    return 0;
  if (c->inlen < 12 || c->in[9] != '2')
    non2xx++;
  return hlen + blen;
}

static void on_read(conn_t *c, int ep) {
  for (;;) {
    ssize_t n = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
    if (n == 0 || (n < 0 && errno != EAGAIN)) { /* closed: reopen */
      errs++;
      epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
      close(c->fd);
      if (open_conn(c, ep) != 0)
        errs++;
      return;
    }
    if (n < 0)
      return;
    c->inlen += (size_t) n;
    size_t used;
    while (c->busy && (used = parse_answer(c)) > 0) {
      uint64_t t = now_ns();
      if (nlat < caplat)
        lat[nlat++] = (uint32_t) ((t - c->due_ns) / 1000);
      memmove(c->in, c->in + used, c->inlen - used);
      c->inlen -= used;
      c->busy = 0;
      maybe_start(c, t);
    }
    if (c->inlen == sizeof c->in) { /* an answer larger than we keep */
      errs++;
      c->inlen = 0;
    }
  }
}

static int cmp32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
  return x < y ? -1 : x > y;
}

static double pct(double q) {
  if (nlat == 0)
    return 0;
  size_t i = (size_t) (q * (double) (nlat - 1) + 0.5);
  return lat[i] / 1000.0;
}

int main(int argc, char **argv) {
  const char *body = "{\"order_id\":\"A1\",\"amount\":12.5}";
  char *file = NULL;
  size_t blen;
  double secs;
  int ep, i;
  conn_t *cs;

  if (argc < 7) {
    fprintf(stderr, "usage: rategen HOST PORT PATH RATE CONNS SECONDS [BODYFILE]\n");
    return 2;
  }
  rate = atof(argv[4]);
  nconn = atoi(argv[5]);
  secs = atof(argv[6]);
  if (rate <= 0 || nconn <= 0 || secs <= 0) {
    fprintf(stderr, "rategen: RATE, CONNS and SECONDS must be positive\n");
    return 2;
  }
  if (argc > 7) {
    FILE *f = fopen(argv[7], "rb");
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
      fprintf(stderr, "rategen: cannot read %s\n", argv[7]);
      return 2;
    }
    rewind(f);
    file = malloc((size_t) n + 1);
    if (file == NULL || fread(file, 1, (size_t) n, f) != (size_t) n)
      return 2;
    file[n] = '\0';
    fclose(f);
    body = file;
  }
  blen = strlen(body);
  req = malloc(blen + 512);
  if (req == NULL)
    return 2;
  reqlen = (size_t) sprintf(req, "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                                 "Content-Length: %zu\r\n\r\n%s", argv[3], argv[1], argv[2], blen, body);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t) atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
    fprintf(stderr, "rategen: HOST must be an IPv4 address\n");
    return 2;
  }
  caplat = (size_t) (rate * secs) + 16;
  lat = malloc(caplat * sizeof *lat);
  cs = calloc((size_t) nconn, sizeof *cs);
  ep = epoll_create1(0);
  if (lat == NULL || cs == NULL || ep < 0)
    return 2;
  for (i = 0; i < nconn; i++) {
    cs[i].next = (uint64_t) i;
    if (open_conn(&cs[i], ep) != 0) {
      perror("rategen: connect");
      return 1;
    }
  }
  usleep(100000); /* let the connections establish before the clock starts */
  start = now_ns();
  stop = start + (uint64_t) (secs * 1e9);
  uint64_t lastsend_late = 0;
  for (;;) {
    uint64_t t = now_ns(), next = UINT64_MAX;
    int pending = 0;
    for (i = 0; i < nconn; i++) {
      conn_t *c = &cs[i];
      int was = c->busy;
      maybe_start(c, t);
      if (!was && c->busy)
        lastsend_late = t - c->due_ns;
      if (c->busy)
        pending = 1;
      else if (due_of(c->next) < stop && due_of(c->next) < next)
        next = due_of(c->next);
    }
    if (!pending && next == UINT64_MAX)
      break;
    if (t > stop + 10000000000ull) { /* 10 s past the end: answers lost */
      for (i = 0; i < nconn; i++) errs += cs[i].busy;
      break;
    }
    uint64_t w = next == UINT64_MAX ? 100000000u : (next > t ? next - t : 0);
    struct timespec ts = {(time_t) (w / 1000000000u), (long) (w % 1000000000u)};
    struct epoll_event evs[256];
    int n = epoll_pwait2(ep, evs, 256, &ts, NULL);
    for (int k = 0; k < n; k++) {
      conn_t *c = evs[k].data.ptr;
      if (evs[k].events & EPOLLOUT)
        try_send(c);
      if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        on_read(c, ep);
    }
  }
  qsort(lat, nlat, sizeof *lat, cmp32);
  printf("RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f reqs=%zu "
         "non2xx=%ld errs=%ld late_ms=%.3f target=%.0f conns=%d\n",
         (double) nlat / secs, pct(0.5), pct(0.9), pct(0.99), pct(0.999),
         nlat ? lat[nlat - 1] / 1000.0 : 0, nlat, non2xx, errs, lastsend_late / 1e6, rate, nconn);
  free(file);
  return 0;
}
