/* dedupe: keys, the overlay of keys not committed yet, and the store's
 * dedupe table (see dedupe.h). */
#include "dedupe.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "crypto.h"
#include "jscan.h"

#define MAX_PATH 16

struct hw_dedupe_spec_s {
  int kind;      /* HW_DK_HEADER or HW_DK_FIELD once resolved */
  char *h1, *h2; /* headers, lower case (h2: a second name, or NULL) */
  char *path[MAX_PATH];
  size_t plen[MAX_PATH];
  int npath;
  double window;
};

/* One key accepted and not committed: kept until the store has committed
 * the request's write and, for a recorded answer, the answer's. */
typedef struct entry_s {
  struct entry_s *chain;       /* hash bucket */
  struct entry_s *prev, *next; /* in order of `keep` */
  char *k;                     /* cycle \0 step \0 key */
  size_t kn;
  int64_t tx;
  double expires;
  uint64_t seq, keep;
  int status;
  char *ctype, *headers, *body;
  size_t blen;
} entry_t;

struct hw_dedupe_s {
  entry_t **bucket;
  size_t nbucket, count;
  entry_t *head, *tail;
  const hw_store_t *st; /* the store the entries' sequence numbers are of */
  double purged;        /* last purge check */
  int put, get, answer, due, purge; /* statement ids */
};

/* --- spec ----------------------------------------------------------- */

static char *lower_dup(const char *s) {
  char *p = strdup(s);
  for (char *q = p; q && *q; q++)
    *q = (char)tolower((unsigned char)*q);
  return p;
}

void hw_dedupe_spec_free(hw_dedupe_spec_t *sp) {
  if (sp == NULL)
    return;
  free(sp->h1);
  free(sp->h2);
  for (int i = 0; i < sp->npath; i++)
    free(sp->path[i]);
  free(sp);
}

/* "a.b.c" split on dots (empty parts skipped, as U.split_path does). */
static int split_path(hw_dedupe_spec_t *sp, const char *name) {
  const char *p = name;
  while (*p) {
    const char *e = strchr(p, '.');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n > 0) {
      if (sp->npath >= MAX_PATH)
        return -EINVAL;
      if ((sp->path[sp->npath] = strndup(p, n)) == NULL)
        return -ENOMEM;
      sp->plen[sp->npath++] = n;
    }
    p += n;
    if (*p == '.')
      p++;
  }
  return sp->npath > 0 ? 0 : -EINVAL;
}

int hw_dedupe_spec_new(int kind, const char *name, const hw_verify_t *verify,
                       double window, hw_dedupe_spec_t **out) {
  hw_dedupe_spec_t *sp;
  int rc = 0;
  *out = NULL;
  if ((sp = calloc(1, sizeof *sp)) == NULL)
    return -ENOMEM;
  sp->window = window > 0 ? window : HW_DEDUPE_WINDOW;
  sp->kind = kind;
  if (kind == HW_DK_DELIVERY) {
    const char *h1 = NULL, *h2 = NULL, *field = NULL;
    int found = 0;
    for (int i = 0; verify && i < hw_verify_count(verify) && !found; i++)
      found = hw_verify_delivery(hw_verify_at(verify, i), &h1, &h2, &field);
    if (!found) {
      rc = -EINVAL;
    } else if (field) {
      sp->kind = HW_DK_FIELD;
      rc = split_path(sp, field);
    } else {
      sp->kind = HW_DK_HEADER;
      if ((sp->h1 = strdup(h1)) == NULL || (h2 && !(sp->h2 = strdup(h2))))
        rc = -ENOMEM;
    }
  } else if (kind == HW_DK_HEADER && name && *name) {
    if ((sp->h1 = lower_dup(name)) == NULL)
      rc = -ENOMEM;
  } else if (kind == HW_DK_FIELD && name) {
    rc = split_path(sp, name);
  } else {
    rc = -EINVAL;
  }
  if (rc != 0) {
    hw_dedupe_spec_free(sp);
    return rc;
  }
  *out = sp;
  return 0;
}

double hw_dedupe_spec_window(const hw_dedupe_spec_t *sp) {
  return sp->window;
}

/* --- keys ------------------------------------------------------------- */

int hw_dedupe_key_of(const char *v, size_t n, char *key, size_t *klen) {
  unsigned char md[HW_CRYPTO_MAX_MD];
  size_t mlen;
  if (n == 0)
    return 0;
  if (n <= HW_DEDUPE_MAX_KEY) {
    memcpy(key, v, n);
    key[n] = '\0';
    *klen = n;
    return 1;
  }
  /* long keys are stored as their digest: the table stays small */
  if (hw_crypto_digest("sha256", v, n, md, &mlen) != 0)
    return 0;
  memcpy(key, "sha256:", 7);
  *klen = 7 + hw_hex_encode(md, mlen, key + 7);
  return 1;
}

/* A JSON scalar as the Lua side prints it (U.scalar_string): 1 with the
 * text (in small, or malloc'd into *heap when large), 0 for null, objects
 * and arrays (no key). */
static int scalar_text(hw_jslice_t t, char *small, size_t cap, char **text,
                       size_t *n, char **heap) {
  int64_t i;
  int literal;
  double d;
  *heap = NULL;
  *text = small;
  switch (t.p[0]) {
  case '"':
    if (hw_jscan_string(t, small, cap, n) == 0)
      return 1;
    if ((*heap = malloc(*n ? *n : 1)) == NULL)
      return 0;
    hw_jscan_string(t, *heap, *n, n);
    *text = *heap;
    return 1;
  case 't':
    *n = 4;
    memcpy(small, "true", 5);
    return 1;
  case 'f':
    *n = 5;
    memcpy(small, "false", 6);
    return 1;
  case 'n':
  case '{':
  case '[':
    return 0;
  default:
    if (hw_jscan_integer(t, &i, &literal) && literal) {
      *n = (size_t)snprintf(small, cap, "%lld", (long long)i);
      return 1;
    }
    d = hw_jscan_double(t);
    if (d == floor(d) && d > -9007199254740992.0 && d < 9007199254740992.0) {
      *n = (size_t)snprintf(small, cap, "%.0f", d == 0 ? 0.0 : d);
    } else {
      *n = (size_t)snprintf(small, cap, "%.14g", d);
      /* Lua marks a float that prints like an integer with ".0" */
      if (strspn(small, "-0123456789") == *n)
        *n += (size_t)snprintf(small + *n, cap - *n, ".0");
    }
    return 1;
  }
}

int hw_dedupe_key(const hw_dedupe_spec_t *sp, const hw_req_view_t *r,
                  const char *json, size_t jlen, char *key, size_t *klen) {
  hw_jslice_t t, m;
  char small[HW_DEDUPE_KEY_BUF], *text, *heap;
  size_t n;
  int rc;
  if (sp->kind == HW_DK_HEADER) {
    const char *v = r->header(r->ctx, sp->h1, &n);
    if (v == NULL && sp->h2 != NULL)
      v = r->header(r->ctx, sp->h2, &n);
    return v ? hw_dedupe_key_of(v, n, key, klen) : 0;
  }
  if (json == NULL)
    return -ENOTSUP;
  if (jlen >= 3 && memcmp(json, "\xEF\xBB\xBF", 3) == 0) {
    json += 3; /* a UTF-8 BOM, skipped as the body reader does */
    jlen -= 3;
  }
  if (hw_jscan_check(json, jlen, &t) != 0)
    return 0;
  for (int i = 0; i < sp->npath; i++) {
    if (!hw_jscan_find(t, sp->path[i], sp->plen[i], &m))
      return 0;
    t = m;
  }
  if (!scalar_text(t, small, sizeof small, &text, &n, &heap))
    return 0;
  rc = hw_dedupe_key_of(text, n, key, klen);
  free(heap);
  return rc;
}

/* --- the overlay ------------------------------------------------------ */

int hw_dedupe_new(hw_dedupe_t **out) {
  hw_dedupe_t *d = calloc(1, sizeof *d);
  *out = NULL;
  if (d == NULL)
    return -ENOMEM;
  d->nbucket = 1024;
  if ((d->bucket = calloc(d->nbucket, sizeof *d->bucket)) == NULL) {
    free(d);
    return -ENOMEM;
  }
  d->put = hw_store_stmt_id("dedupe_put");
  d->get = hw_store_stmt_id("dedupe_get");
  d->answer = hw_store_stmt_id("dedupe_answer");
  d->due = hw_store_stmt_id("dedupe_due");
  d->purge = hw_store_stmt_id("dedupe_purge");
  *out = d;
  return 0;
}

static void entry_free(entry_t *e) {
  free(e->k);
  free(e->ctype);
  free(e->headers);
  free(e->body);
  free(e);
}

static uint64_t hash(const char *k, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
  return h;
}

static entry_t **slot(hw_dedupe_t *d, const char *k, size_t n) {
  entry_t **p = &d->bucket[hash(k, n) & (d->nbucket - 1)];
  while (*p && !((*p)->kn == n && memcmp((*p)->k, k, n) == 0))
    p = &(*p)->chain;
  return p;
}

static void list_unlink(hw_dedupe_t *d, entry_t *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    d->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    d->tail = e->prev;
  e->prev = e->next = NULL;
}

static void list_append(hw_dedupe_t *d, entry_t *e) {
  e->prev = d->tail;
  e->next = NULL;
  if (d->tail)
    d->tail->next = e;
  else
    d->head = e;
  d->tail = e;
}

static void drop(hw_dedupe_t *d, entry_t *e) {
  entry_t **p = slot(d, e->k, e->kn);
  if (*p == e)
    *p = e->chain;
  list_unlink(d, e);
  d->count--;
  entry_free(e);
}

void hw_dedupe_free(hw_dedupe_t *d) {
  if (d == NULL)
    return;
  while (d->head)
    drop(d, d->head);
  free(d->bucket);
  free(d);
}

size_t hw_dedupe_overlay_size(const hw_dedupe_t *d) {
  return d->count;
}

/* Drops what the store has committed past (readers see it now).  Entries
 * of another store (a test opened a new one) are dropped whole. */
static void gc(hw_dedupe_t *d, const hw_store_t *st) {
  uint64_t written, done;
  if (st != d->st) {
    while (d->head)
      drop(d, d->head);
    d->st = st;
    return;
  }
  if (d->head == NULL)
    return;
  hw_store_progress(st, &written, &done);
  while (d->head && d->head->keep <= done)
    drop(d, d->head);
}

/* cycle \0 step \0 key into a malloc'd buffer. */
static char *mkey(const char *cycle, const char *step, const char *key,
                  size_t klen, size_t *n) {
  size_t c = strlen(cycle), s = strlen(step);
  char *k = malloc(c + s + klen + 2);
  if (k == NULL)
    return NULL;
  memcpy(k, cycle, c + 1);
  memcpy(k + c + 1, step, s + 1);
  memcpy(k + c + s + 2, key, klen);
  *n = c + s + klen + 2;
  return k;
}

typedef struct {
  int found;
  int64_t tx;
} row_t;

static int got_row(int nc, const hw_val_t *c, const char *const *names,
                   void *arg) {
  row_t *r = arg;
  for (int i = 0; i < nc; i++)
    if (strcmp(names[i], "tx") == 0 && c[i].type == HW_V_INT) {
      r->found = 1;
      r->tx = c[i].i;
    }
  return 1;
}

static void text(hw_val_t *v, const char *s, size_t n) {
  v->type = HW_V_TEXT;
  v->s = s;
  v->n = n;
}

int hw_dedupe_find(hw_dedupe_t *d, hw_store_t *st, const char *cycle,
                   const char *step, const char *key, size_t klen, double now,
                   hw_dedupe_hit_t *hit) {
  size_t n;
  char *k;
  entry_t *e;
  hw_val_t v[4];
  row_t row = {0, 0};
  memset(hit, 0, sizeof *hit);
  gc(d, st);
  if ((k = mkey(cycle, step, key, klen, &n)) == NULL)
    return -ENOMEM;
  e = *slot(d, k, n);
  free(k);
  if (e != NULL && e->expires > now) {
    hit->tx = e->tx;
    hit->seq = e->seq;
    hit->status = e->status;
    hit->ctype = e->ctype;
    hit->headers = e->headers;
    hit->body = e->body;
    hit->body_len = e->blen;
    return 1;
  }
  text(&v[0], cycle, strlen(cycle));
  text(&v[1], step, strlen(step));
  text(&v[2], key, klen);
  v[3].type = HW_V_REAL;
  v[3].d = now;
  if (hw_store_query(st, d->get, v, 4, got_row, &row) != 0)
    return -EIO;
  if (!row.found)
    return 0;
  hit->tx = row.tx;
  return 1;
}

/* The entry for k, made when absent (NULL: out of memory or full). */
static entry_t *upsert(hw_dedupe_t *d, char *k, size_t n) {
  entry_t **p = slot(d, k, n), *e = *p;
  if (e != NULL) {
    free(k);
    list_unlink(d, e);
    return e;
  }
  if (d->count >= HW_DEDUPE_MAX_OVERLAY || (e = calloc(1, sizeof *e)) == NULL) {
    free(k);
    return NULL;
  }
  e->k = k;
  e->kn = n;
  *p = e;
  d->count++;
  return e;
}

int hw_dedupe_note(hw_dedupe_t *d, hw_store_t *st, const char *cycle,
                   const char *step, const char *key, size_t klen, int64_t tx,
                   double window, double now, uint64_t *seq) {
  hw_val_t v[5];
  size_t n;
  char *k;
  entry_t *e;
  int rc;
  gc(d, st);
  text(&v[0], cycle, strlen(cycle));
  text(&v[1], step, strlen(step));
  text(&v[2], key, klen);
  v[3].type = HW_V_INT;
  v[3].i = tx;
  v[4].type = HW_V_REAL;
  v[4].d = now + window;
  /* a request's write: dropped with the request's own if their batch
   * fails (a kept write would outlive the request and make its retry a
   * duplicate) */
  if ((rc = hw_store_write_req(st, d->put, v, 5, seq)) != 0)
    return rc;
  if ((k = mkey(cycle, step, key, klen, &n)) == NULL ||
      (e = upsert(d, k, n)) == NULL)
    return 0; /* the store has it; a duplicate right behind may run */
  free(e->ctype);
  free(e->headers);
  free(e->body);
  e->ctype = e->headers = e->body = NULL;
  e->status = 0;
  e->blen = 0;
  e->tx = tx;
  e->expires = now + window;
  e->seq = e->keep = *seq;
  list_append(d, e);
  return 0;
}

void hw_dedupe_forget(hw_dedupe_t *d, const char *cycle, const char *step,
                      const char *key, size_t klen, int64_t tx) {
  size_t n;
  char *k = mkey(cycle, step, key, klen, &n);
  entry_t *e;
  if (k == NULL)
    return;
  e = *slot(d, k, n);
  free(k);
  if (e != NULL && e->tx == tx)
    drop(d, e);
}

int hw_dedupe_record(hw_dedupe_t *d, hw_store_t *st, const char *cycle,
                     const char *step, const char *key, size_t klen, int64_t tx,
                     int status, const char *ctype, const char *headers_json,
                     const char *body, size_t blen) {
  hw_val_t v[8];
  uint64_t written, done;
  size_t n;
  char *k;
  entry_t *e;
  int rc;
  gc(d, st);
  text(&v[0], cycle, strlen(cycle));
  text(&v[1], step, strlen(step));
  text(&v[2], key, klen);
  v[3].type = HW_V_INT;
  v[3].i = tx;
  v[4].type = HW_V_INT;
  v[4].i = status;
  if (ctype)
    text(&v[5], ctype, strlen(ctype));
  else
    v[5].type = HW_V_NULL;
  text(&v[6], headers_json ? headers_json : "[]",
       headers_json ? strlen(headers_json) : 2);
  text(&v[7], body ? body : "", body ? blen : 0);
  if ((rc = hw_store_write(st, d->answer, v, 8)) != 0)
    return rc;
  hw_store_progress(st, &written, &done);
  /* kept (with the answer) until the answer's write commits: a duplicate
   * in between gets the answer, not "still running" */
  if ((k = mkey(cycle, step, key, klen, &n)) == NULL)
    return -ENOMEM;
  e = *slot(d, k, n);
  if (e != NULL && e->tx != tx) {
    free(k);
    return 0; /* a later delivery took the key over */
  }
  if ((e = upsert(d, k, n)) == NULL)
    return -ENOMEM;
  if (e->tx == 0) { /* dropped at its commit: made again */
    e->tx = tx;
    e->expires = HUGE_VAL;
  }
  free(e->ctype);
  free(e->headers);
  free(e->body);
  e->ctype = ctype ? strdup(ctype) : NULL;
  e->headers = strdup(headers_json ? headers_json : "[]");
  e->body = malloc(blen + 1);
  if ((ctype && !e->ctype) || !e->headers || !e->body) {
    list_append(d, e);
    drop(d, e);
    return -ENOMEM;
  }
  memcpy(e->body, body ? body : "", blen);
  e->body[blen] = '\0';
  e->blen = blen;
  e->status = status;
  e->keep = written;
  list_append(d, e);
  return 0;
}

static int got_due(int nc, const hw_val_t *c, const char *const *names,
                   void *arg) {
  ((row_t *)arg)->found = 1;
  return 1;
}

void hw_dedupe_tick(hw_dedupe_t *d, hw_store_t *st, double now, int sweep) {
  hw_val_t v;
  row_t row = {0, 0};
  gc(d, st);
  if (!sweep)
    return;
  /* expired keys go in batches of at most 1000 a second, ahead of any
   * steady rate of new keys; an index probe first, so an idle engine
   * writes nothing */
  if (now - d->purged < 1)
    return;
  d->purged = now;
  v.type = HW_V_REAL;
  v.d = now;
  if (hw_store_query(st, d->due, &v, 1, got_due, &row) == 0 && row.found)
    hw_store_write(st, d->purge, &v, 1);
}
