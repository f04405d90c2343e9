/* http_client_int: what the two files of the outbound client share (the
 * transfer, socket and client structs, and the functions one file calls in
 * the other).  Included only by http_client.c (transfers, retries, delivery,
 * the public API) and http_client_io.c (socket watchers, curl's timer and
 * the callbacks curl calls while a transfer runs).  Not a public API.
 */
#ifndef HW_HTTP_CLIENT_INT_H
#define HW_HTTP_CLIENT_INT_H

#include "http_client.h"

#include <stdint.h>
#include <curl/curl.h>

#define MAX_RESPONSE_DEFAULT ((size_t) 10 << 20)
#define TIMEOUT_DEFAULT_MS 30000L
#define TIMEOUT_MAX_MS (24L * 3600 * 1000)
#define MAX_RETRIES 100            /* bounds the attempts array */
#define MAX_REDIRS 20
#define MAX_CONNS_DEFAULT 512L
#define MAX_BUFFERED_DEFAULT ((size_t) 256 << 20)
/* Sized to the 1,000-in-flight target: below that, finishing transfers would
 * close their connections instead of returning them to the cache. */
#define MAXCONNECTS 1024L
#define POOL_MAX 256               /* idle transfers (easy handles) kept */
#define KEEP_BUF_MAX (64 * 1024)   /* bigger buffers are freed on recycle */
#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 10000
#define RETRY_AFTER_MAX_S 60

typedef enum {
  X_IDLE, X_RUNNING, X_WAITING, X_CANCELLED, X_DELIVERING
} xstate_t;

typedef struct { char *p; size_t len, cap; } buf_t;
typedef struct { hw_hc_xfer_t *head, *tail; } xlist_t;

typedef struct sock_s sock_t;
struct sock_s {                    /* one per socket curl asks us to watch */
  uv_poll_t poll;
  hw_hc_t *hc;
  curl_socket_t fd;
  int events;                      /* UV_READABLE|UV_WRITABLE armed now */
  int parked;                      /* curl is not watching it (idle in cache) */
  sock_t *prev, *next;
};

struct hw_hc_xfer_s {
  hw_hc_t *hc;
  CURL *easy;                      /* pooled with the transfer */
  xstate_t state;
  hw_hc_xfer_t *prev, *next;       /* in exactly one list of hc, per state */
  hw_hc_done_cb cb;
  void *arg;
  struct curl_slist *hdrs;         /* request headers, freed on recycle */
  buf_t strs;                      /* "METHOD\0URL\0", for error messages */
  size_t url_off;
  buf_t body;                      /* response body of the current attempt */
  buf_t harena;                    /* "name\0value\0" of the current response */
  hw_hc_header_t *hvec;            /* filled from harena at delivery */
  hw_hc_attempt_t *att;            /* sized retries + 1 at start */
  int nhdr, hvec_cap, natt, att_cap, retries, err, too_large, oom;
  int allow_private, denied, mem_full;
  int follow, hops_left, post, head;   /* redirects, followed by us */
  struct curl_slist *hdrs_pub;     /* hdrs without the origin-bound ones */
  char origin[256];                /* "scheme://host:port" of the URL */
  char why[192];                   /* why the policy refused an address */
  long timeout_ms;
  size_t max_response;
  uint64_t t0, t_attempt, due;     /* hrtime ns, hrtime ns, loop ms */
  char errbuf[CURL_ERROR_SIZE];
  char empty[1];                   /* body when there is none */
};

struct hw_hc_s {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t curl_timer;           /* curl's single timeout */
  uv_timer_t retry_timer;          /* nearest retry deadline */
  uv_timer_t defer_timer;          /* delivers cancellations from the loop */
  xlist_t running, waiting, cancelled, pool;
  sock_t *socks;
  sock_t **byfd;                   /* watcher of each fd we opened, or NULL */
  unsigned char *ours;             /* fds opened by on_open_socket */
  int nfd;                         /* size of byfd and ours */
  const hw_netpolicy_t *policy;
  size_t buffered, max_buffered;   /* response bytes held, all transfers */
  long max_conns;                  /* as set by hw_hc_set_limits */
  int npool, active, handles, closing, torn;
  uint64_t rng;
};


/* http_client.c */
int hw_hc__buf_reserve(buf_t *b, size_t extra);
int hw_hc__buf_add(buf_t *b, const char *s, size_t n, int count_nul);
void *hw_hc__grow(void *p, int *cap, int n, size_t size);
void hw_hc__drain_done(hw_hc_t *hc);

/* http_client_io.c */
void hw_hc__sock_close(sock_t *sk);
void hw_hc__on_timer_closed(uv_handle_t *h);
int hw_hc__on_socket(CURL *e, curl_socket_t s, int what, void *userp,
                     void *socketp);
int hw_hc__on_curl_timer(CURLM *m, long ms, void *userp);
size_t hw_hc__on_write(char *p, size_t size, size_t n, void *ud);
int hw_hc__on_close_socket(void *ud, curl_socket_t fd);
curl_socket_t hw_hc__on_open_socket(void *ud, curlsocktype purpose,
                                    struct curl_sockaddr *a);
size_t hw_hc__on_header(char *p, size_t size, size_t n, void *ud);

#endif
