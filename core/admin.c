/* admin: the admin listener.  Checks HOOKWORK_ADMIN_TOKEN (every route but
 * /healthz), then hands the route to the Lua engine (E.admin), which reads
 * the store and the cycle registry and renders JSON or Prometheus text. */
#include "engine.h"
#include "lua_api.h"

#include <lauxlib.h>
#include <string.h>

/* Constant-time comparison: the token must not leak through timing. */
static int token_ok(const char *want, const char *got) {
  size_t i, n = strlen(want), m;
  unsigned char diff = 0;
  if (got == NULL || strncmp(got, "Bearer ", 7) != 0)
    return 0;
  got += 7;
  m = strlen(got);
  for (i = 0; i < n; i++)
    diff |= (unsigned char) want[i] ^ (unsigned char) (i < m ? got[i] : 0);
  return diff == 0 && m == n;
}

static void answer(hw_http_req_t *req, int status, const char *ctype,
                   const char *body, size_t len) {
  hw_http_respond(req, status, ctype, NULL, body, len);
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
  if (e->cfg.admin_token != NULL && e->cfg.admin_token[0] != '\0' &&
      !token_ok(e->cfg.admin_token, hw_http_req_header(req, "authorization"))) {
    const char *msg = "{\"error\":\"missing or wrong admin token\"}";
    answer(req, 401, "application/json", msg, strlen(msg));
    return;
  }
  lua_pushstring(L, req->method);
  lua_pushstring(L, req->path);
  lua_pushstring(L, req->query);
  lua_pushlstring(L, req->body ? req->body : "", req->body_len);
  if (hw_lua_call(e, "admin", 4, 3) != 0) {
    const char *msg = "{\"error\":\"internal error\"}";
    answer(req, 500, "application/json", msg, strlen(msg));
    return;
  }
  status = (int) lua_tointeger(L, -3);
  ctype = lua_tostring(L, -2);
  body = lua_tolstring(L, -1, &len);
  answer(req, status ? status : 500, ctype, body ? body : "", body ? len : 0);
  lua_pop(L, 3);
}
