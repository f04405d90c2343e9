/* http_client: outbound HTTP on libcurl's multi interface, driven by the one
 * libuv loop (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION with uv_poll and uv_timer,
 * curl_multi_socket_action).  No threads, nothing blocks.
 *
 * Owns: the curl multi handle, one uv_poll_t per curl socket, curl's timer,
 * every transfer and its response buffers until the done callback returns.
 * Retries (connection errors, 429, 5xx) wait on a uv_timer with exponential
 * backoff and jitter, honouring Retry-After.
 *
 * Bounds (hw_hc_set_limits): at most max_conns connections open at once
 * (more transfers wait in curl's queue), each response at most its
 * max_response, all responses being received together at most max_buffered
 * bytes, and a transfer with no byte for its timeout fails.  Only http and
 * https, redirects included (at most `follow` hops).  Every connection is
 * checked against the address policy (netpolicy.h) after DNS.
 */
#ifndef HW_HTTP_CLIENT_H
#define HW_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "netpolicy.h"

typedef struct hw_hc_s hw_hc_t;            /* the client (one per engine) */
typedef struct hw_hc_xfer_s hw_hc_xfer_t;  /* one logical request */

typedef struct hw_hc_request_s {
  const char *method;        /* GET POST PUT PATCH DELETE (any token) */
  const char *url;           /* absolute http(s) URL, query already added */
  const char *const *headers;/* NULL-terminated "Name: value" list, or NULL */
  const char *body;          /* may be NULL */
  size_t body_len;
  double timeout;            /* seconds per attempt; <= 0 means 30 */
  int retries;               /* extra attempts after the first; default 0,
                                at most 100 */
  int follow;                /* redirects to follow (hops, at most 20);
                                0: none (a 3xx is the answer) */
  int origin_headers;        /* the first N of headers go to the URL's
                                origin only: a redirect elsewhere drops
                                them (the connector's headers) */
  int allow_private;         /* lifts the built-in link-local/metadata
                                refusal (never the operator's deny list) */
  int insecure;              /* 1 disables TLS verification (default 0) */
  size_t max_response;       /* bytes; 0 means 10 MiB */
} hw_hc_request_t;

typedef struct hw_hc_attempt_s {
  int status;                /* HTTP status, 0 when none */
  double seconds;            /* duration of the attempt */
  char error[256];           /* "" when the attempt got a response */
} hw_hc_attempt_t;

typedef struct hw_hc_header_s {
  char *name;                /* lower-cased */
  char *value;
} hw_hc_header_t;

/* The result, valid only during the done callback. */
typedef struct hw_hc_response_s {
  int error;                 /* 0, or negative: the request failed:
                                UV_ECONNREFUSED (or another -errno from
                                connect), UV_EAI_NONAME (DNS), UV_ETIMEDOUT,
                                UV_EPROTO (TLS), UV_ECONNRESET, UV_EMSGSIZE
                                (over max_response), UV_EINVAL (bad URL or
                                scheme), UV_EACCES (address refused by the
                                policy), UV_ENOMEM, UV_ECANCELED, UV_EIO */
  char errmsg[512];          /* when error: "POST http://x/y: connection
                                refused" - names method, URL and cause */
  int status;                /* final HTTP status (0 when error) */
  hw_hc_header_t *headers;   /* final response's headers */
  int nheaders;
  char *body;                /* NUL-terminated */
  size_t body_len;
  hw_hc_attempt_t *attempts; /* one per attempt, in order */
  int nattempts;
  double seconds;            /* total time including backoff waits */
} hw_hc_response_t;

typedef void (*hw_hc_done_cb)(hw_hc_response_t *res, void *arg);

int hw_hc_init(uv_loop_t *loop, hw_hc_t **out);

/* The address policy every connection is checked against (not owned; NULL:
 * none).  Set before the first transfer. */
void hw_hc_set_policy(hw_hc_t *hc, const hw_netpolicy_t *policy);

/* max_conns: connections open at once (0: 512); max_buffered: response
 * bytes held by all transfers together (0: 256 MiB). */
void hw_hc_set_limits(hw_hc_t *hc, long max_conns, size_t max_buffered);
/* idle: keep-alive connections kept in the cache for reuse when their
 * call ends (0: as many as max_conns, at most 1024); never more than
 * max_conns.  Call after hw_hc_set_limits. */
void hw_hc_set_pool(hw_hc_t *hc, long idle);
/* Cancels every transfer (callbacks get error UV_ECANCELED), closes handles
 * and frees the client once they are closed. */
void hw_hc_close(hw_hc_t *hc);

/* Starts a request.  Returns 0 and later calls cb exactly once (never
 * synchronously), or returns a negative code and never calls cb (UV_EINVAL
 * for a malformed method, URL or header; UV_ECANCELED after hw_hc_close;
 * UV_ENOMEM).  The request is copied; the caller's strings may be freed
 * after the call.  *xfer (xfer may be NULL) stays valid until cb is called;
 * it must not be used after that. */
int hw_hc_start(hw_hc_t *hc, const hw_hc_request_t *req, hw_hc_done_cb cb,
                void *arg, hw_hc_xfer_t **xfer);

/* Number of transfers in flight (for metrics/tests). */
int hw_hc_active(const hw_hc_t *hc);

#endif
