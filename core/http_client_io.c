/* http_client_io: the outbound client's side of the loop.  One uv_poll_t
 * per socket curl asks us to watch (a sock_t, freed in its close callback;
 * watchers stay armed across calls on a kept-alive connection, see
 * http_client.c), curl's single timer, the sockets we open and close for
 * curl (the address policy is applied in on_open_socket, on the address
 * actually connected), and the body and header callbacks curl calls while a
 * transfer runs (they only buffer: no user code runs inside curl).
 *
 * Owns: the socket watchers.  Uses: libuv, libcurl, netpolicy; the structs
 * of http_client_int.h.
 */
#include "http_client_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- handle bookkeeping ------------------------------------------------- */

/* The client is freed after the close callback of its last handle. */
static void hc_handle_closed(hw_hc_t *hc) {
  if (--hc->handles == 0 && hc->torn) free(hc);
}

void hw_hc__on_timer_closed(uv_handle_t *h) { hc_handle_closed(h->data); }

static void sock_closed(uv_handle_t *h) {
  sock_t *sk = h->data;
  hw_hc_t *hc = sk->hc;

  free(sk);
  hc_handle_closed(hc);
}

/* uv_close stops the watcher at once (epoll_ctl DEL), so the descriptor
 * may be closed right after this returns. */
void hw_hc__sock_close(sock_t *sk) {
  hw_hc_t *hc = sk->hc;

  if (sk->prev) sk->prev->next = sk->next; else hc->socks = sk->next;
  if (sk->next) sk->next->prev = sk->prev;
  if (sk->fd >= 0 && sk->fd < hc->nfd && hc->byfd[sk->fd] == sk)
    hc->byfd[sk->fd] = NULL;
  uv_close((uv_handle_t *) &sk->poll, sock_closed);
}

/* Grows byfd and ours to hold fd (doubling). */
static int fd_room(hw_hc_t *hc, curl_socket_t fd) {
  int n = hc->nfd ? hc->nfd : 64;
  sock_t **b;
  unsigned char *o;

  if (fd < 0) return UV_EINVAL;
  if (fd < hc->nfd) return 0;
  while (n <= fd) n *= 2;
  if ((b = realloc(hc->byfd, (size_t) n * sizeof *b)) == NULL)
    return UV_ENOMEM;
  hc->byfd = b;
  if ((o = realloc(hc->ours, (size_t) n)) == NULL) return UV_ENOMEM;
  hc->ours = o;
  memset(b + hc->nfd, 0, (size_t) (n - hc->nfd) * sizeof *b);
  memset(o + hc->nfd, 0, (size_t) (n - hc->nfd));
  hc->nfd = n;
  return 0;
}

static sock_t *sock_new(hw_hc_t *hc, curl_socket_t fd) {
  sock_t *sk = calloc(1, sizeof *sk);

  if (sk == NULL) return NULL;
  if (uv_poll_init_socket(hc->loop, &sk->poll, fd) < 0) {
    free(sk);                      /* handle was never registered */
    return NULL;
  }
  sk->poll.data = sk;
  sk->hc = hc;
  sk->fd = fd;
  if (fd >= 0 && fd < hc->nfd && hc->ours[fd]) hc->byfd[fd] = sk;
  sk->next = hc->socks;
  if (hc->socks) hc->socks->prev = sk;
  hc->socks = sk;
  hc->handles++;
  return sk;
}

/* ---- curl <-> libuv glue ------------------------------------------------ */

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_t *sk = p->data;
  hw_hc_t *hc = sk->hc;
  int flags = 0, running;

  if (sk->parked) {
    /* an idle connection turned readable: the peer closed it (or sent
     * junk).  Stop watching, or level-triggered epoll spins; curl finds it
     * dead when it next looks and closes it through hw_hc__on_close_socket. */
    uv_poll_stop(&sk->poll);
    sk->events = 0;
    return;
  }
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (status == 0 && (events & UV_READABLE)) flags |= CURL_CSELECT_IN;
  if (status == 0 && (events & UV_WRITABLE)) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(hc->multi, sk->fd, flags, &running);
  hw_hc__drain_done(hc);
}

/* CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket.  The
 * watcher is re-armed only when the wanted events change (each uv_poll_start
 * is an epoll_ctl DEL and ADD in libuv), and a socket of ours is parked, not
 * closed, when curl stops watching it: see the head of this file. */
int hw_hc__on_socket(CURL *e, curl_socket_t s, int what, void *userp,
                     void *socketp) {
  hw_hc_t *hc = userp;
  sock_t *sk = socketp;
  int ev = 0;

  (void) e;
  if (sk == NULL && s >= 0 && s < hc->nfd) sk = hc->byfd[s];  /* parked */
  if (what == CURL_POLL_REMOVE) {
    if (sk == NULL) return 0;      /* curl forgets socketp itself */
    if (hc->torn || s < 0 || s >= hc->nfd || !hc->ours[s] ||
        sk->events == 0) {
      hw_hc__sock_close(sk);
      return 0;
    }
    sk->parked = 1;                /* stays armed (readable) while idle, */
    uv_unref((uv_handle_t *) &sk->poll);  /* without keeping the loop alive */
    if (sk->events != UV_READABLE &&
        uv_poll_start(&sk->poll, UV_READABLE, on_poll) == 0)
      sk->events = UV_READABLE;
    return 0;
  }
  if (sk == NULL) {
    sk = sock_new(hc, s);
    if (sk == NULL) return -1;     /* curl fails the transfers on it */
  }
  if (socketp == NULL) curl_multi_assign(hc->multi, s, sk);
  if (sk->parked) uv_ref((uv_handle_t *) &sk->poll);
  sk->parked = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  if (ev == sk->events) return 0;  /* already armed for exactly these */
  if (ev == 0) {
    uv_poll_stop(&sk->poll);
  } else if (uv_poll_start(&sk->poll, ev, on_poll) < 0) {
    sk->events = 0;
    return -1;
  }
  sk->events = ev;
  return 0;
}

static void on_curl_timeout(uv_timer_t *t) {
  hw_hc_t *hc = t->data;
  int running;

  curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  hw_hc__drain_done(hc);
}

/* CURLMOPT_TIMERFUNCTION.  Even a 0 ms timeout goes through the loop: curl
 * forbids calling socket_action from inside this callback. */
int hw_hc__on_curl_timer(CURLM *m, long ms, void *userp) {
  hw_hc_t *hc = userp;

  if (hc->torn) return 0;          /* curl_multi_cleanup may still call */
  if (ms < 0) uv_timer_stop(&hc->curl_timer);
  else uv_timer_start(&hc->curl_timer, on_curl_timeout, (uint64_t) ms, 0);
  return 0;
}

/* ---- response callbacks (run inside curl: buffer only, no user code) ---- */

size_t hw_hc__on_write(char *p, size_t size, size_t n, void *ud) {
  hw_hc_xfer_t *x = ud;
  size_t len = size * n;

  if (len > x->max_response - x->body.len) x->too_large = 1;
  else if (len > x->hc->max_buffered - x->hc->buffered) x->mem_full = 1;
  else if (hw_hc__buf_add(&x->body, p, len, 0) < 0) x->oom = 1;
  else {
    x->hc->buffered += len;
    return len;
  }
  return 0;                        /* a short count aborts the transfer */
}

/* Opens a connection socket and marks it ours, so its watcher may be parked;
 * without room to mark it, it is watched the plain way (closed on REMOVE). */
static curl_socket_t sock_open(hw_hc_t *hc, struct curl_sockaddr *a) {
  curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC,
                            a->protocol);

  if (fd >= 0 && fd_room(hc, fd) == 0) {
    hc->ours[fd] = 1;
    hc->byfd[fd] = NULL;
  }
  return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION (data: the client, which outlives every
 * connection of its multi handle): the watcher goes before the fd does, so
 * a new socket given the same number never meets a stale one. */
int hw_hc__on_close_socket(void *ud, curl_socket_t fd) {
  hw_hc_t *hc = ud;

  if (fd >= 0 && fd < hc->nfd) {
    if (hc->byfd[fd] != NULL) hw_hc__sock_close(hc->byfd[fd]);
    hc->ours[fd] = 0;
  }
  return close(fd);
}

/* CURLOPT_OPENSOCKETFUNCTION: every connection, redirect hops included, is
 * checked on the address actually about to be connected (after DNS). */
curl_socket_t hw_hc__on_open_socket(void *ud, curlsocktype purpose,
                                    struct curl_sockaddr *a) {
  hw_hc_xfer_t *x = ud;
  const hw_netpolicy_t *pol = x->hc->policy;

  if (purpose == CURLSOCKTYPE_IPCXN && pol != NULL &&
      hw_netpolicy_check(pol, &a->addr, x->allow_private, x->why,
                         sizeof x->why) != 0) {
    x->denied = 1;
    return CURL_SOCKET_BAD;        /* curl tries the next address, if any */
  }
  return sock_open(x->hc, a);
}

/* Stores "Name: value" as lower-cased "name\0value\0".  The header vector is
 * grown here so that delivery itself cannot fail. */
static int header_add(hw_hc_xfer_t *x, const char *p, size_t len) {
  const char *colon = memchr(p, ':', len), *v;
  size_t nlen, vlen, i;
  hw_hc_header_t *hv;
  char *dst;

  if (colon == NULL) return 0;     /* not a header: ignore */
  nlen = (size_t) (colon - p);
  while (nlen > 0 && isblank((unsigned char) p[nlen - 1])) nlen--;
  v = colon + 1;
  vlen = len - (size_t) (v - p);
  while (vlen > 0 && isblank((unsigned char) *v)) v++, vlen--;
  while (vlen > 0 && isblank((unsigned char) v[vlen - 1])) vlen--;
  hv = hw_hc__grow(x->hvec, &x->hvec_cap, x->nhdr + 1, sizeof *hv);
  if (hv == NULL) return UV_ENOMEM;
  x->hvec = hv;
  if (hw_hc__buf_reserve(&x->harena, nlen + vlen + 2) < 0) return UV_ENOMEM;
  dst = x->harena.p + x->harena.len;
  for (i = 0; i < nlen; i++) dst[i] = (char) tolower((unsigned char) p[i]);
  dst[nlen] = '\0';
  if (vlen > 0) memcpy(dst + nlen + 1, v, vlen);
  dst[nlen + 1 + vlen] = '\0';
  x->harena.len += nlen + vlen + 2;
  x->nhdr++;
  return 0;
}

/* Obsolete line folding: the continuation joins the last value. */
static int header_fold(hw_hc_xfer_t *x, const char *p, size_t len) {
  while (len > 0 && isblank((unsigned char) *p)) p++, len--;
  if (x->nhdr == 0 || len == 0) return 0;
  x->harena.len--;                 /* reopen the last value's NUL */
  if (hw_hc__buf_add(&x->harena, " ", 1, 0) < 0) return UV_ENOMEM;
  return hw_hc__buf_add(&x->harena, p, len, 1);
}

/* CURLOPT_HEADERFUNCTION: one line per call, for every response including
 * 1xx and redirects; a status line starts over so only the final response's
 * headers remain. */
size_t hw_hc__on_header(char *p, size_t size, size_t n, void *ud) {
  hw_hc_xfer_t *x = ud;
  size_t all = size * n, len = all;
  int rc;

  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    x->harena.len = 0;
    x->nhdr = 0;
    return all;
  }
  while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n')) len--;
  if (len == 0) return all;
  if (p[0] == ' ' || p[0] == '\t') rc = header_fold(x, p, len);
  else rc = header_add(x, p, len);
  if (rc < 0) x->oom = 1;          /* and abort, as in hw_hc__on_write */
  return rc < 0 ? 0 : all;
}

