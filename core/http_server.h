/* http_server: an HTTP/1.1 server on one libuv loop, parsing with llhttp.
 *
 * Owns: the listening socket, every connection, every parsed request.
 * Uses: libuv (tcp, timers), llhttp.
 *
 * One request per connection is in flight at a time: after a request is
 * complete the server stops parsing that connection, hands the request to the
 * handler *outside* llhttp_execute, and resumes parsing (pipelined bytes
 * already read are kept) once the handler has answered.  So handlers may answer
 * later (asynchronously) and answers leave in request order.
 *
 * Limits are answered by the server itself, never reaching the handler:
 *   body over max_body -> 413, headers over 16 KiB or 100 headers -> 431,
 *   bodies of all connections over max_body_total -> 503 (Retry-After: 1),
 *   headers or body not complete within read_timeout_ms -> 408,
 *   any parse error -> 400; all four close the connection after answering.
 * Idle keep-alive connections are closed after idle_timeout_ms.
 */
#ifndef HW_HTTP_SERVER_H
#define HW_HTTP_SERVER_H

#include <stddef.h>
#include <uv.h>

#define HW_HTTP_MAX_HEADERS 100
#define HW_HTTP_MAX_HEADER_BYTES (16 * 1024)

typedef struct hw_http_server_s hw_http_server_t;
typedef struct hw_http_conn_s hw_http_conn_t;

typedef struct hw_http_header_s {
  char *name;  /* lower-cased, NUL-terminated */
  char *value; /* NUL-terminated, leading/trailing blanks trimmed */
} hw_http_header_t;

/* A complete request.  Owned by the server; handed to the handler, which must
 * call hw_http_respond() exactly once (it may do so later, from any loop
 * callback).  The request stays valid until then even if the client has gone;
 * hw_http_req_gone() tells whether it has. */
typedef struct hw_http_req_s {
  const char *method;      /* "GET", "POST", ... */
  char *path;              /* URL path, percent-decoding NOT applied */
  char *query;             /* raw query string without '?', "" when none */
  hw_http_header_t *headers;
  int nheaders;
  char *body;              /* NUL-terminated for convenience; may hold NULs */
  size_t body_len;
  char peer_ip[64];        /* socket peer address, text; IPv4-mapped IPv6
                              addresses are given as plain IPv4 */
  int keep_alive;          /* the connection stays open after the answer */
  void *data;              /* free for the handler */
  /* private */
  hw_http_conn_t *conn;    /* NULL once the client has gone */
} hw_http_req_t;

typedef void (*hw_http_handler_cb)(hw_http_server_t *srv, hw_http_req_t *req,
                                   void *arg);

typedef struct hw_http_limits_s {
  size_t max_body;          /* default 1 MiB */
  unsigned read_timeout_ms; /* headers+body must arrive within; default 10 s */
  unsigned idle_timeout_ms; /* keep-alive idle close; default 60 s */
  unsigned max_conns;       /* open connections; past it new ones are
                               accepted and closed at once, with a log line
                               (at most one a second); 0: 10000 */
  size_t max_body_total;    /* request-body bytes held by all connections
                               together; past it 503 and close; 0: none */
} hw_http_limits_t;

/* Allocates and starts a server listening on host:port (IPv4 or IPv6 text).
 * port 0 picks a free port; hw_http_server_port() tells which.
 * Returns 0 and *out, or a negative UV_E* code (nothing allocated). */
int hw_http_server_start(uv_loop_t *loop, const char *host, int port,
                         const hw_http_limits_t *limits,
                         hw_http_handler_cb cb, void *arg,
                         hw_http_server_t **out);
int hw_http_server_port(const hw_http_server_t *srv);

/* Stops accepting; open connections finish their current request and close.
 * Requests held by the handler stay valid until answered.  The server frees
 * itself once every handle has closed and every held request is answered;
 * `done` (may be NULL) is then called once. */
void hw_http_server_close(hw_http_server_t *srv, void (*done)(void *),
                          void *done_arg);

/* Answers req and releases it (req is invalid afterwards).  `headers` is a
 * NULL-terminated array of "Name: value" strings (may be NULL); the server adds
 * Content-Length, Date-less minimal framing and Connection as needed. If
 * content_type is NULL, none is sent. Copies everything it needs.
 * Returns 0; UV_EINVAL when status is outside 200..999 or content_type or a
 * header holds CR or LF (a bare 500 goes out instead and the connection
 * closes); or a libuv write error (the connection is closed).  req is released
 * in every case. */
int hw_http_respond(hw_http_req_t *req, int status, const char *content_type,
                    const char *const *headers, const char *body,
                    size_t body_len);

/* 1 when the client disconnected while the request was held. */
int hw_http_req_gone(const hw_http_req_t *req);

/* Header lookup by lower-case name; NULL when absent (first match). */
const char *hw_http_req_header(const hw_http_req_t *req, const char *name);

/* Reason phrase for a status code ("OK", "Not Found", ...). */
const char *hw_http_reason(int status);

#endif
