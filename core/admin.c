/* admin: the admin listener.  Serves the web console's assets (console.c;
 * they hold no data, so no token), checks HOOKWORK_ADMIN_TOKEN (every other
 * route but /healthz), then hands the route to the Lua engine (E.admin), which reads
 * the store and the cycle registry and renders JSON or Prometheus text,
 * answering later (through core.answer) when a route reads off the loop. */
#include "console.h"
#include "engine.h"
#include "lua_api.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Constant-time comparison: the token must not leak through timing.  The
 * scheme is case-insensitive and may be followed by more than one space
 * (RFC 9110 11.1, 11.4). */
static int token_ok(const char *want, const char *got) {
  size_t i, n = strlen(want), m;
  unsigned char diff = 0;
  if (got == NULL || strncasecmp(got, "Bearer ", 7) != 0)
    return 0;
  got += 7;
  while (*got == ' ')
    got++;
  m = strlen(got);
  for (i = 0; i < n; i++)
    diff |= (unsigned char) want[i] ^ (unsigned char) (i < m ? got[i] : 0);
  return diff == 0 && m == n;
}

static void answer(hw_http_req_t *req, int status, const char *ctype,
                   const char *body, size_t len) {
  hw_http_respond(req, status, ctype, NULL, body, len);
}

/* A 405 names the methods the route takes. */
static void answer_allow(hw_http_req_t *req, int status, const char *ctype,
                         const char *body, size_t len, const char *allow) {
  char line[64];
  const char *headers[2] = {line, NULL};
  if (allow == NULL) {
    answer(req, status, ctype, body, len);
    return;
  }
  snprintf(line, sizeof line, "Allow: %s", allow);
  hw_http_respond(req, status, ctype, headers, body, len);
}

/* A browser page of another site may send simple POSTs to the admin port
 * (stop a cycle, retry, replay) with the user's network position; without
 * a token nothing else stands in its way.  Browsers name the page's origin
 * on such requests (Origin, Sec-Fetch-Site); tools like curl send neither.
 * Reads stay open: a cross-site page cannot read the answers (no CORS). */
static int cross_site(hw_http_req_t *req) {
  const char *site, *origin, *host, *p;
  if (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0)
    return 0;
  site = hw_http_req_header(req, "sec-fetch-site");
  if (site != NULL && strcmp(site, "cross-site") == 0)
    return 1;
  origin = hw_http_req_header(req, "origin");
  if (origin == NULL)
    return 0;
  host = hw_http_req_header(req, "host");
  p = strstr(origin, "://");
  return p == NULL || host == NULL || strcasecmp(p + 3, host) != 0;
}

/* Inside the protected call (out of memory is an error, not a panic). */
static int push_admin_call(lua_State *L, void *arg) {
  hw_http_req_t *req = arg;
  lua_pushstring(L, req->method);
  lua_pushstring(L, req->path);
  lua_pushstring(L, req->query);
  lua_pushlstring(L, req->body ? req->body : "", req->body_len);
  lua_pushlightuserdata(L, req);
  return 5;
}

void hw_admin_handle(hw_http_server_t *srv, hw_http_req_t *req, void *arg) {
  hw_engine_t *e = arg;
  lua_State *L = e->L;
  const char *body, *ctype;
  size_t len;
  int status;
  (void) srv;

  if (strcmp(req->path, "/healthz") == 0) {
    answer(req, 200, "application/json", "{\"ok\":true}", 11);
    return;
  }
  if (hw_console_owns(req->path)) {
    hw_console_serve(req);
    return;
  }
  if (e->cfg.admin_token != NULL && e->cfg.admin_token[0] != '\0' &&
      !token_ok(e->cfg.admin_token, hw_http_req_header(req, "authorization"))) {
    const char *msg = "{\"error\":\"missing or wrong admin token\"}";
    answer(req, 401, "application/json", msg, strlen(msg));
    return;
  }
  if (cross_site(req)) {
    const char *msg = "{\"error\":\"cross-site request refused: the Origin "
                      "is not this admin address\"}";
    answer(req, 403, "application/json", msg, strlen(msg));
    return;
  }
  /* E.admin answers through core.answer when it returns no status (a
   * route that reads off the loop thread answers later). */
  if (hw_lua_callp(e, "admin", push_admin_call, req, 4) != 0) {
    const char *msg = "{\"error\":\"internal error\"}";
    answer(req, 500, "application/json", msg, strlen(msg));
    return;
  }
  if (lua_isnil(L, -4)) {
    lua_pop(L, 4);
    return;
  }
  status = (int) lua_tointeger(L, -4);
  ctype = lua_tostring(L, -3);
  body = lua_tolstring(L, -2, &len);
  answer_allow(req, status ? status : 500, ctype, body ? body : "",
               body ? len : 0, lua_tostring(L, -1));
  lua_pop(L, 4);
}
