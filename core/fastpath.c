/* fastpath: see fastpath.h.  The order of the door is E.submit's: method,
 * state, IP filter, store refusal, Content-Encoding, body, fields; any
 * "no" on the way returns 1 before anything is written, and the Lua path
 * then gives the answer it always gave. */
#include "fastpath.h"
#include "codec.h"
#include "dedupe.h"
#include "hook.h"
#include "jscan.h"
#include "log.h"
#include "rejects.h"
#include "lua_api.h"
#include "scheduler.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *p;
  size_t len, cap;
  int bad; /* out of memory, or bytes the store text cannot hold as given */
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
  if (b->bad)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;
    while (cap < b->len + n + 1)
      cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL) {
      b->bad = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

/* s[0..n) as a JSON string.  Bytes that are not UTF-8 mark the buffer bad
 * (the Lua encoder would write U+FFFD there: that request takes the Lua
 * path, so the stored text is always what the Lua side would store). */
static void put_str(buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *) s, *end = p + n, *run;
  put(b, "\"", 1);
  while (p < end) {
    run = p;
    while (p < end && *p >= 0x20 && *p != '"' && *p != '\\' && *p < 0x80)
      p++;
    put(b, (const char *) run, (size_t) (p - run));
    if (p >= end)
      break;
    if (*p >= 0x80) {
      hw_jslice_t one;
      /* one UTF-8 sequence, checked as the decoder would */
      size_t k = 1;
      while (p + k < end && k < 4 && (p[k] & 0xC0) == 0x80)
        k++;
      char tmp[8];
      tmp[0] = '"';
      memcpy(tmp + 1, p, k);
      tmp[k + 1] = '"';
      if (hw_jscan_check(tmp, k + 2, &one) != 0) {
        b->bad = 1;
        return;
      }
      put(b, (const char *) p, k);
      p += k;
      continue;
    }
    if (*p == '"' || *p == '\\') {
      char esc[2] = {'\\', (char) *p};
      put(b, esc, 2);
    } else if (*p == '\n' || *p == '\r' || *p == '\t' || *p == '\b' || *p == '\f') {
      /* as the encoder writes them */
      char esc[2] = {'\\', *p == '\n' ? 'n' : *p == '\r' ? 'r' : *p == '\t' ? 't'
                                   : *p == '\b' ? 'b' : 'f'};
      put(b, esc, 2);
    } else {
      char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
      put(b, esc, 6);
    }
    p++;
  }
  put(b, "\"", 1);
}

/* A double that reads back the same (17 digits always do; the stored text
 * is read, never compared), ".0" added when it looks integral so it stays a
 * float as the Lua encoder's would. */
static void put_double(buf_t *b, double d) {
  char s[40];
  snprintf(s, sizeof s, "%.17g", d);
  if (strpbrk(s, ".eEn") == NULL)
    strcat(s, ".0");
  puts_(b, s);
}

/* The last value of header `name` (the Lua request table keeps the last). */
static const char *header(const hw_http_req_t *req, const char *name) {
  const char *v = NULL;
  int i;
  for (i = 0; i < req->nheaders; i++)
    if (strcmp(req->headers[i].name, name) == 0)
      v = req->headers[i].value;
  return v;
}

/* The request as verify.c and dedupe.c read it (the last value of each
 * header, as the Lua request table keeps). */
static const char *view_header(void *ctx, const char *name, size_t *len) {
  const char *v = header(ctx, name);
  if (v != NULL)
    *len = strlen(v);
  return v;
}

/* --- the data a request adds to tx.data ----------------------------- */

typedef struct {
  hw_jslice_t v;
  int present;
  int64_t i; /* HW_FT_INTEGER written from a non-literal */
  int literal;
} found_t;

/* The field's value in the body (U.get), checked against its type
 * (fields.lua's json_type_ok).  0 (present or an optional one absent), or
 * -1 when the Lua side must answer (missing, wrong type, unsure). */
static int field_value(const hw_field_t *f, hw_jslice_t root, found_t *out) {
  hw_jslice_t cur = root;
  int i, rc;
  char c;
  out->present = 0;
  for (i = 0; i < f->nseg; i++) {
    if (cur.p[0] != '{')
      return f->optional ? 0 : -1;
    rc = hw_jscan_member(cur, f->segs[i], f->lens[i], &cur);
    if (rc < 0)
      return -1;
    if (rc == 0)
      return f->optional ? 0 : -1;
  }
  c = cur.p[0];
  if (c == 'n') /* null is absent */
    return f->optional ? 0 : -1;
  switch (f->type) {
  case HW_FT_STRING: if (c != '"') return -1; break;
  case HW_FT_NUMBER: if (c != '-' && (c < '0' || c > '9')) return -1; break;
  case HW_FT_INTEGER:
    if ((c != '-' && (c < '0' || c > '9')) ||
        !hw_jscan_integer(cur, &out->i, &out->literal))
      return -1;
    break;
  case HW_FT_BOOLEAN: if (c != 't' && c != 'f') return -1; break;
  case HW_FT_OBJECT: if (c != '{') return -1; break;
  case HW_FT_ARRAY: if (c != '[') return -1; break;
  default: break;
  }
  out->v = cur;
  out->present = 1;
  return 0;
}

static void put_value(buf_t *b, const hw_field_t *f, const found_t *v) {
  if (f->type == HW_FT_INTEGER && !v->literal) {
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long) v->i);
    puts_(b, s);
  } else {
    put(b, v->v.p, v->v.n);
  }
}

/* Fields [lo, hi) share their first d segments: one object of them (what
 * U.set builds; groups with no value present are not created). */
static void put_group(buf_t *b, const hw_field_t *f, const found_t *v, int lo,
                      int hi, int d) {
  int i = lo, first = 1, j, k, any;
  put(b, "{", 1);
  while (i < hi) {
    if (f[i].nseg == d + 1) {
      if (v[i].present) {
        if (!first)
          put(b, ",", 1);
        put_str(b, f[i].segs[d], f[i].lens[d]);
        put(b, ":", 1);
        put_value(b, &f[i], &v[i]);
        first = 0;
      }
      i++;
      continue;
    }
    for (j = i + 1; j < hi && f[j].nseg > d + 1 && f[j].lens[d] == f[i].lens[d] &&
                    memcmp(f[j].segs[d], f[i].segs[d], f[i].lens[d]) == 0;
         j++)
      ;
    for (any = 0, k = i; k < j; k++)
      any |= v[k].present;
    if (any) {
      if (!first)
        put(b, ",", 1);
      put_str(b, f[i].segs[d], f[i].lens[d]);
      put(b, ":", 1);
      put_group(b, f, v, i, j, d + 1);
      first = 0;
    }
    i = j;
  }
  put(b, "}", 1);
}

#define MAX_MEMBERS 64

/* No `fields`: every top-level member that is not null (F.extract).  A
 * repeated or escaped key goes to the Lua side (the decoder's last-wins
 * could drop a member a copy of the text would keep). */
static int data_all(buf_t *b, hw_jslice_t root) {
  hw_jslice_t keys[MAX_MEMBERS], k, v;
  const char *pos = root.p, *end = root.p + root.n;
  int n = 0, i, first = 1;
  put(b, "{", 1);
  while (hw_jscan_next(&pos, end, &k, &v)) {
    if (n == MAX_MEMBERS || memchr(k.p, '\\', k.n) != NULL)
      return -1;
    for (i = 0; i < n; i++)
      if (keys[i].n == k.n && memcmp(keys[i].p, k.p, k.n) == 0)
        return -1;
    keys[n++] = k;
    if (v.p[0] == 'n')
      continue;
    if (!first)
      put(b, ",", 1);
    put(b, "\"", 1);
    put(b, k.p, k.n);
    put(b, "\":", 2);
    put(b, v.p, v.n);
    first = 0;
  }
  put(b, "}", 1);
  return 0;
}

static int build_data(buf_t *b, const hw_hook_t *h, hw_jslice_t root) {
  found_t small[16], *v = small;
  int i, rc = 0;
  if (!h->has_spec)
    return data_all(b, root);
  if (h->nfields > 16 && (v = calloc((size_t) h->nfields, sizeof *v)) == NULL)
    return -1;
  for (i = 0; i < h->nfields && rc == 0; i++)
    rc = field_value(&h->fields[i], root, &v[i]);
  if (rc == 0)
    put_group(b, h->fields, v, 0, h->nfields, 0);
  if (v != small)
    free(v);
  return rc;
}

/* --- the body ------------------------------------------------------- */

static int media_is_json(const char *mt, size_t n) {
  if ((n == 16 && strncmp(mt, "application/json", 16) == 0) ||
      (n == 9 && strncmp(mt, "text/json", 9) == 0))
    return 1;
  /* application/X+json */
  return n > 17 && strncmp(mt, "application/", 12) == 0 &&
         strncmp(mt + n - 5, "+json", 5) == 0;
}

/* The media type, lower-case (F.media_type): 0, or -1 when too long. */
static int media_type(const char *ct, char *mt, size_t cap, size_t *n) {
  size_t i = 0;
  *n = 0;
  if (ct == NULL)
    return 0;
  while (*ct == ' ' || (*ct >= '\t' && *ct <= '\r'))
    ct++;
  while (ct[i] && ct[i] != ';' && ct[i] != ' ' && !(ct[i] >= '\t' && ct[i] <= '\r')) {
    if (i + 1 >= cap)
      return -1;
    mt[i] = (char) (ct[i] >= 'A' && ct[i] <= 'Z' ? ct[i] + 32 : ct[i]);
    i++;
  }
  *n = i;
  return 0;
}

/* The JSON object of the decoded body (F.parse_body's JSON cases), or -1
 * for the Lua side (empty, raw, form, multipart, an array, bad JSON). */
static int body_object(const hw_http_req_t *req, const char *body, size_t n,
                       hw_jslice_t *root) {
  char mt[128];
  size_t mn;
  if (media_type(header(req, "content-type"), mt, sizeof mt, &mn) != 0)
    return -1;
  if (mn == 33 && memcmp(mt, "application/x-www-form-urlencoded", 33) == 0) {
    /* a JSON object labelled as a form is read as JSON (no BOM here) */
  } else if (media_is_json(mt, mn) || mn == 0 ||
             (mn == 10 && memcmp(mt, "text/plain", 10) == 0)) {
    if (n >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0)
      body += 3, n -= 3;
  } else {
    return -1;
  }
  if (hw_jscan_check(body, n, root) != 0 || root->p[0] != '{')
    return -1;
  return 0;
}

/* Content-Encoding (engine.lua decode_body): 0 with *out (NULL: the body
 * as it came; else malloc'd), or -1 for the Lua side. */
static int decode(hw_engine_t *e, const hw_http_req_t *req, char **out,
                  size_t *outn) {
  const char *h = header(req, "content-encoding");
  char enc[16];
  size_t n = 0, max = e->cfg.max_body > 0 ? e->cfg.max_body : 1048576;
  int kind;
  *out = NULL;
  for (; h != NULL && *h; h++) {
    if (*h == ' ' || (*h >= '\t' && *h <= '\r'))
      continue;
    if (n + 1 >= sizeof enc)
      return -1;
    enc[n++] = (char) (*h >= 'A' && *h <= 'Z' ? *h + 32 : *h);
  }
  enc[n] = '\0';
  if (n == 0 || strcmp(enc, "identity") == 0)
    return 0;
  if (strcmp(enc, "gzip") == 0 || strcmp(enc, "x-gzip") == 0)
    kind = HW_INFLATE_GZIP;
  else if (strcmp(enc, "deflate") == 0)
    kind = HW_INFLATE_DEFLATE;
  else
    return -1;
  return hw_inflate(req->body ? req->body : "", req->body_len, kind, max, out,
                    outn) == 0 ? 0 : -1;
}

/* --- the query string (U.parse_query) -------------------------------- */

#define MAX_QUERY 64

typedef struct {
  char *buf;         /* every decoded key and value, one after the other */
  const char *k[MAX_QUERY], *v[MAX_QUERY];
  size_t kn[MAX_QUERY], vn[MAX_QUERY];
  int n;
} query_t;

static int hexv(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (char) (c | 0x20);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* U.url_decode of s[0..n) into o: '+' is a space, %XX a byte. */
static size_t url_decode(const char *s, size_t n, char *o) {
  size_t i, j = 0;
  for (i = 0; i < n; i++) {
    if (s[i] == '+') {
      o[j++] = ' ';
    } else if (s[i] == '%' && i + 2 < n && hexv(s[i + 1]) >= 0 &&
               hexv(s[i + 2]) >= 0) {
      o[j++] = (char) (hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
      i += 2;
    } else {
      o[j++] = s[i];
    }
  }
  return j;
}

/* Splits and decodes the query as U.parse_query does ("a=1&b", pairs
 * without a key skipped).  0, or -1 for the Lua side (too many pairs, no
 * memory). */
static int parse_query(const char *q, query_t *out) {
  size_t len = strlen(q), i = 0;
  char *o;
  out->n = 0;
  out->buf = o = malloc(len + 1);
  if (o == NULL)
    return -1;
  while (i < len) {
    size_t j = i, eq;
    while (j < len && q[j] != '&')
      j++;
    for (eq = i; eq < j && q[eq] != '='; eq++)
      ;
    if (eq > i) { /* a key */
      if (out->n == MAX_QUERY)
        return -1;
      out->k[out->n] = o;
      out->kn[out->n] = url_decode(q + i, eq - i, o);
      o += out->kn[out->n];
      out->v[out->n] = o;
      out->vn[out->n] = eq < j ? url_decode(q + eq + 1, j - eq - 1, o) : 0;
      o += out->vn[out->n];
      out->n++;
    }
    i = j + 1;
  }
  return 0;
}

/* Whether pair i is overridden by a later pair with the same key. */
static int query_shadowed(const query_t *q, int i) {
  int j;
  for (j = i + 1; j < q->n; j++)
    if (q->kn[j] == q->kn[i] && memcmp(q->k[j], q->k[i], q->kn[i]) == 0)
      return 1;
  return 0;
}

/* ops.stored_request: method, path, headers (the last of each name), query
 * (the last of each key), body, ip, received. */
static void stored_request(buf_t *b, const hw_http_req_t *req, const query_t *q,
                           const char *body, size_t n, const char *ip, double now) {
  int i, j, first = 1;
  size_t room = 192 + n + n / 8 + strlen(req->path) + strlen(req->query);
  for (i = 0; i < req->nheaders; i++)
    room += strlen(req->headers[i].name) + strlen(req->headers[i].value) + 8;
  /* one allocation for the common case (put grows it when escapes need more) */
  if ((b->p = malloc(room)) != NULL)
    b->cap = room;
  puts_(b, "{\"method\":");
  put_str(b, req->method, strlen(req->method));
  puts_(b, ",\"path\":");
  put_str(b, req->path, strlen(req->path));
  puts_(b, ",\"headers\":{");
  for (i = 0; i < req->nheaders; i++) {
    for (j = i + 1; j < req->nheaders; j++)
      if (strcmp(req->headers[i].name, req->headers[j].name) == 0)
        break;
    if (j < req->nheaders)
      continue; /* a later one wins */
    if (!first)
      put(b, ",", 1);
    put_str(b, req->headers[i].name, strlen(req->headers[i].name));
    put(b, ":", 1);
    put_str(b, req->headers[i].value, strlen(req->headers[i].value));
    first = 0;
  }
  puts_(b, "},\"query\":{");
  for (i = 0, first = 1; i < q->n; i++) {
    if (query_shadowed(q, i))
      continue;
    if (!first)
      put(b, ",", 1);
    put_str(b, q->k[i], q->kn[i]);
    put(b, ":", 1);
    put_str(b, q->v[i], q->vn[i]);
    first = 0;
  }
  puts_(b, "},\"body\":");
  put_str(b, body, n);
  puts_(b, ",\"ip\":");
  put_str(b, ip, strlen(ip));
  puts_(b, ",\"received\":");
  put_double(b, now);
  put(b, "}", 1);
}

/* --- after the commit ------------------------------------------------ */

typedef struct {
  hw_engine_t *e;
  hw_http_req_t *req;
  int64_t tx;
  int sync;    /* the run answers the caller */
  double now;  /* wall clock (stored times) */
  double mono; /* monotonic: the sync_timeout counts from the accept */
  buf_t data, request;
  char *cycle, *step;
  char *decoded;   /* the body after Content-Encoding, or NULL: req's */
  query_t query;
  size_t body_len;
  char ip[64];
  char *dkey; /* the dedupe key noted with the request, or NULL */
  size_t dklen;
} pending_t;

static void pending_free(pending_t *p) {
  free(p->data.p);
  free(p->request.p);
  free(p->cycle);
  free(p->step);
  free(p->decoded);
  free(p->query.buf);
  free(p->dkey);
  free(p);
}

/* The run's tx.request as E.submit builds it for the Lua path (the last of
 * a repeated header or query key wins), with the decoded body; the body's
 * JSON is read by the run (fields.parse_body). */
static void push_request(lua_State *L, const pending_t *p) {
  const hw_http_req_t *req = p->req;
  int i;
  lua_createtable(L, 0, 8);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, req->path);
  lua_setfield(L, -2, "path");
  lua_createtable(L, 0, p->query.n);
  for (i = 0; i < p->query.n; i++) {
    lua_pushlstring(L, p->query.k[i], p->query.kn[i]);
    lua_pushlstring(L, p->query.v[i], p->query.vn[i]);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "query");
  lua_pushlstring(L, p->decoded ? p->decoded : (req->body ? req->body : ""), p->body_len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, p->ip);
  lua_setfield(L, -2, "ip");
  lua_createtable(L, 0, req->nheaders);
  for (i = 0; i < req->nheaders; i++) {
    lua_pushstring(L, req->headers[i].value);
    lua_setfield(L, -2, req->headers[i].name);
  }
  lua_setfield(L, -2, "headers");
}

/* Inside a protected call on the main state (the request still held):
 * E.c_accepted(tx, cycle, step, data, request, accepted, accepted_mono,
 * caller) as a new run (queued; the check resumes it); caller: the request
 * for a synchronous run, else nil. */
static int spawn_run(lua_State *L) {
  pending_t *p = lua_touserdata(L, 1);
  hw_engine_t *e = p->e;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->engine_ref);
  lua_getfield(L, -1, "c_accepted");
  lua_remove(L, -2);
  lua_pushinteger(L, (lua_Integer) p->tx);
  lua_pushstring(L, p->cycle);
  lua_pushstring(L, p->step);
  lua_pushlstring(L, p->data.p, p->data.len);
  push_request(L, p);
  lua_pushnumber(L, p->now);
  lua_pushnumber(L, p->mono);
  if (p->sync)
    lua_pushlightuserdata(L, p->req);
  else
    lua_pushnil(L);
  if (hw_sched_spawn(e, L, 8) == NULL)
    return luaL_error(L, "out of memory");
  return 0;
}

struct refusal {
  pending_t *p;
  const char *reason;
};

static int push_refusal(lua_State *L, void *arg) {
  struct refusal *r = arg;
  lua_pushlightuserdata(L, r->p->req);
  lua_pushstring(L, r->p->cycle);
  lua_pushstring(L, r->p->step);
  lua_pushstring(L, r->reason);
  return 4;
}

/* Spawns the run (before the 202: the request is read for tx.request).
 * 0, or -1 when it could not (logged; a stored run goes on after a
 * restart). */
static int spawn(pending_t *p) {
  lua_State *L = p->e->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, spawn_run);
  lua_pushlightuserdata(L, p);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK)
    return 0;
  hw_log("webhook", "transaction %lld: run not started: %s", (long long) p->tx,
         lua_tostring(L, -1));
  lua_settop(L, top);
  return -1;
}

static void committed(int status, const char *reason, void *arg) {
  pending_t *p = arg;
  hw_engine_t *e = p->e;
  if (status != 0) {
    /* not stored: its dedupe key was not either (dedupe.lua's forget) */
    if (p->dkey != NULL && e->dedupe != NULL)
      hw_dedupe_forget(e->dedupe, p->cycle, p->step, p->dkey, p->dklen, p->tx);
    /* not stored: the Lua side's 503, counted as the Lua path counts it */
    struct refusal r = {p, reason ? reason : "the store could not commit"};
    if (hw_lua_callp(e, "c_refused", push_refusal, &r, 0) != 0)
      hw_http_respond(p->req, 500, "application/json", NULL,
                      "{\"error\":\"internal error\"}", 26);
    pending_free(p);
    return;
  }
  e->accepts.c_path++;
  if (e->stopping == 2) /* the run goes on after the restart */
    p->sync = 0;
  else if (spawn(p) != 0 && p->sync) { /* (as E.webhook answers an error) */
    hw_http_respond(p->req, 500, "application/json", NULL,
                    "{\"error\":\"internal error\"}", 26);
    pending_free(p);
    return;
  }
  if (!p->sync) {
    /* a synchronous caller is answered by its run */
    char body[96];
    int n = snprintf(body, sizeof body, "{\"accepted\":true,\"transaction\":\"%lld\"}",
                     (long long) p->tx);
    hw_http_respond(p->req, 202, "application/json", NULL, body, (size_t) n);
  }
  pending_free(p);
}

/* --- the door -------------------------------------------------------- */

static int token_of(const char *path, size_t *n) {
  const char *t = path + 7, *q = t; /* after "/hooks/" */
  while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
         (*q >= '0' && *q <= '9') || *q == '_' || *q == '-')
    q++;
  *n = (size_t) (q - t);
  return *n > 0 && (*q == '\0' || (q[0] == '/' && q[1] == '\0')) ? 0 : -1;
}

static int write_tx(hw_engine_t *e, pending_t *p, const hw_hook_t *h,
                    uint64_t *seq) {
  static int stmt = -2;
  hw_val_t v[11];
  memset(v, 0, sizeof v);
  if (stmt == -2)
    stmt = hw_store_stmt_id("tx_insert");
  if (stmt < 0 || hw_store_next_id(e->store, HW_ID_TX, &p->tx) != 0)
    return -1;
  v[0].type = HW_V_INT, v[0].i = p->tx;
  v[1].type = HW_V_TEXT, v[1].s = h->cycle, v[1].n = strlen(h->cycle);
  v[2].type = HW_V_TEXT, v[2].s = "running", v[2].n = 7;
  v[3].type = HW_V_TEXT, v[3].s = h->step, v[3].n = strlen(h->step);
  v[4].type = HW_V_TEXT, v[4].s = p->data.p, v[4].n = p->data.len;
  v[5].type = HW_V_REAL, v[5].d = p->now;
  v[6].type = HW_V_REAL, v[6].d = p->now;
  v[7].type = HW_V_INT, v[7].i = 1;
  v[8].type = HW_V_NULL;
  v[9].type = HW_V_NULL;
  v[10].type = HW_V_TEXT, v[10].s = p->request.p, v[10].n = p->request.len;
  return hw_store_write_req(e->store, stmt, v, 11, seq);
}

int hw_fast_accept(hw_engine_t *e, hw_http_req_t *req, const char *ip) {
  const hw_hook_t *h;
  size_t tn, bn;
  char *decoded = NULL, why[8];
  const char *body;
  hw_jslice_t root;
  pending_t *p;
  uint64_t seq, dseq;
  hw_req_view_t view;
  hw_verify_result_t vres;
  hw_dedupe_hit_t hit;
  char key[HW_DEDUPE_KEY_BUF];
  size_t klen;

  if (e->store == NULL || e->hooks == NULL || token_of(req->path, &tn) != 0)
    return 1;
  h = hw_hooks_find(e->hooks, req->path + 7, tn);
  if (hw_rejects_try(e, req, h, ip) == 0)
    return 0;
  if (h == NULL || !h->fast || !(hw_hook_method_bit(req->method) & h->methods) ||
      !h->running ||
      (h->ip_filtered && (h->filter == NULL || !hw_ipfilter_match(h->filter, ip))) ||
      hw_store_refusal(e->store, why, sizeof why))
    return 1;
  view.method = req->method;
  view.body = req->body ? req->body : "";
  view.body_len = req->body_len;
  view.header = view_header;
  view.ctx = req;
  /* verify over the raw bytes; a request that fails goes to the Lua path,
   * which answers the 401 (its log line and metrics have one source) */
  if (h->verify != NULL && hw_verify_check(h->verify, &view, hw_now(), &vres) != 0)
    return 1;
  if (decode(e, req, &decoded, &bn) != 0)
    return 1;
  body = decoded ? decoded : (req->body ? req->body : "");
  if (decoded == NULL)
    bn = req->body_len;
  p = calloc(1, sizeof *p);
  if (p != NULL) {
    p->decoded = decoded; /* freed with p */
    p->body_len = bn;
    decoded = NULL;
  }
  if (p == NULL || parse_query(req->query, &p->query) != 0 ||
      body_object(req, body, bn, &root) != 0 ||
      build_data(&p->data, h, root) != 0 || p->data.bad) {
    free(decoded);
    if (p != NULL)
      pending_free(p);
    return 1;
  }
  p->e = e;
  p->req = req;
  p->sync = h->sync;
  p->now = hw_now();
  p->mono = hw_mono();
  /* dedupe: a duplicate (or a key the C side cannot read) goes to the Lua
   * path, which answers it like the first delivery */
  if (h->dedupe != NULL) {
    int rc = hw_dedupe_key(h->dedupe, &view, root.p, root.n, key, &klen);
    if (rc == 1 && e->dedupe == NULL && hw_dedupe_new(&e->dedupe) != 0)
      rc = -ENOMEM;
    if (rc == 1 && (hw_dedupe_find(e->dedupe, e->store, h->cycle, h->step, key,
                                   klen, p->now, &hit) != 0 ||
                    (p->dkey = malloc(klen + 1)) == NULL))
      rc = -1;
    if (rc < 0) {
      pending_free(p);
      return 1;
    }
    if (rc == 1) {
      memcpy(p->dkey, key, klen);
      p->dkey[klen] = '\0';
      p->dklen = klen;
    }
  }
  stored_request(&p->request, req, &p->query, body, bn, ip, p->now);
  snprintf(p->ip, sizeof p->ip, "%s", ip);
  p->cycle = strdup(h->cycle);
  p->step = strdup(h->step);
  if (p->request.bad || p->cycle == NULL || p->step == NULL ||
      write_tx(e, p, h, &seq) != 0) {
    pending_free(p); /* (an id drawn stays a gap, never a duplicate) */
    return 1;
  }
  /* the key's row rides in the same batch as the transaction */
  if (p->dkey != NULL &&
      hw_dedupe_note(e->dedupe, e->store, p->cycle, p->step, p->dkey, p->dklen,
                     p->tx, hw_dedupe_spec_window(h->dedupe), p->now, &dseq) != 0)
    hw_log("webhook", "transaction %lld: dedupe key not queued", (long long) p->tx);
  if (hw_store_await(e->store, seq, committed, p) != 0) {
    /* written but nobody waits: the 202 cannot be promised; the row runs
     * at the next start like any stored transaction */
    hw_log("webhook", "transaction %lld: cannot wait for its commit", (long long) p->tx);
    hw_http_respond(req, 500, "application/json", NULL,
                    "{\"error\":\"internal error\"}", 26);
    pending_free(p);
  }
  return 0;
}
