/* rejects: see rejects.h. */
#include "rejects.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_MAX 4096

typedef struct {
  int status;
  char cycle[128], step[128]; /* "" for an unknown token */
  char reason[320];
  char ip[64];
  double time;
} record_t;

struct hw_rejects_s {
  record_t *q;
  int n;
};

/* Whether s can go into a JSON string as it is (the encoder would write
 * it byte for byte): printable ASCII without quote or backslash. */
static int plain(const char *s) {
  for (; *s; s++)
    if ((unsigned char) *s < 0x20 || (unsigned char) *s >= 0x7f || *s == '"' ||
        *s == '\\')
      return 0;
  return 1;
}

/* Allow: the methods sorted as table.sort sorts their names. */
static void allow_list(unsigned methods, char *out, size_t cap) {
  static const char *const sorted[] = {"DELETE", "GET",   "HEAD", "OPTIONS",
                                       "PATCH",  "POST",  "PUT"};
  size_t i, o = 0;
  out[0] = '\0';
  for (i = 0; i < sizeof sorted / sizeof sorted[0]; i++)
    if (methods & hw_hook_method_bit(sorted[i]))
      o += (size_t) snprintf(out + o, cap - o, "%s%s", o ? ", " : "", sorted[i]);
}

int hw_rejects_try(hw_engine_t *e, hw_http_req_t *req, const hw_hook_t *h,
                   const char *ip) {
  hw_rejects_t *r = e->rejects;
  record_t *x;
  char body[512], allow[80];
  const char *hdr[2] = {NULL, NULL};
  int status, n;

  if (h != NULL && h->cors)
    return 1; /* (its answers carry CORS headers; a preflight is answered) */
  if (h == NULL)
    status = 404;
  else if (!(hw_hook_method_bit(req->method) & h->methods))
    status = 405;
  else if (!h->running)
    status = 503;
  else if (h->ip_filtered && (h->filter == NULL || !hw_ipfilter_match(h->filter, ip)))
    status = 403;
  else
    return 1;
  if (r == NULL) {
    if ((r = calloc(1, sizeof *r)) == NULL)
      return 1;
    e->rejects = r;
  }
  if (r->q == NULL && (r->q = malloc(QUEUE_MAX * sizeof *r->q)) == NULL)
    return 1;
  if (r->n == QUEUE_MAX || !plain(req->method) || !plain(ip) ||
      (h != NULL && (!plain(h->cycle) || strlen(h->cycle) >= sizeof x->cycle ||
                     strlen(h->step) >= sizeof x->step)))
    return 1;
  x = &r->q[r->n];
  memset(x, 0, sizeof *x);
  x->status = status;
  if (h != NULL) {
    strcpy(x->cycle, h->cycle);
    strcpy(x->step, h->step);
  }
  switch (status) {
  case 404: snprintf(x->reason, sizeof x->reason, "unknown webhook"); break;
  case 405:
    snprintf(x->reason, sizeof x->reason, "method %s not allowed", req->method);
    allow_list(h->methods, allow + 7, sizeof allow - 7);
    memcpy(allow, "Allow: ", 7);
    hdr[0] = allow;
    break;
  case 503: snprintf(x->reason, sizeof x->reason, "cycle '%s' is stopped", h->cycle); break;
  default:
    snprintf(x->reason, sizeof x->reason, "address %s is not allowed for this webhook", ip);
  }
  snprintf(x->ip, sizeof x->ip, "%s", ip);
  x->time = hw_now();
  r->n++;
  e->accepts.c_rejected++;
  n = snprintf(body, sizeof body, "{\"error\":\"%s\"}", x->reason);
  hw_http_respond(req, status, "application/json", hdr[0] ? hdr : NULL, body, (size_t) n);
  return 0;
}

int hw_rejects_lua_drain(lua_State *L) {
  hw_engine_t *e = lua_touserdata(L, lua_upvalueindex(1));
  hw_rejects_t *r = e->rejects;
  int i, n = r ? r->n : 0;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    const record_t *x = &r->q[i];
    lua_createtable(L, 0, 6);
    if (x->cycle[0]) {
      lua_pushstring(L, x->cycle);
      lua_setfield(L, -2, "cycle");
      lua_pushstring(L, x->step);
      lua_setfield(L, -2, "step");
    }
    lua_pushinteger(L, x->status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, x->reason);
    lua_setfield(L, -2, "reason");
    lua_pushstring(L, x->ip);
    lua_setfield(L, -2, "ip");
    lua_pushnumber(L, x->time);
    lua_setfield(L, -2, "time");
    lua_rawseti(L, -2, i + 1);
  }
  if (r != NULL)
    r->n = 0; /* (only once the list is built: out of memory keeps them) */
  return 1;
}

void hw_rejects_free(hw_engine_t *e) {
  if (e->rejects != NULL)
    free(e->rejects->q);
  free(e->rejects);
  e->rejects = NULL;
}
