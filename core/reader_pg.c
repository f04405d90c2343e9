/* reader_pg: admin reads on PostgreSQL, on the reader thread (see
 * reader_pg.h).  The connection is blocking: the thread exists so that
 * waiting here never holds the loop. */
#include "reader_pg.h"

#include "codec.h"

#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HW_RPG_CACHE 24
#define HW_RPG_MAXPARAMS 999

/* type oids (pg_type.h is server-side; these never change) */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700

struct hw_reader_pg_s {
  PGconn *conn;
  struct {
    char *sql; /* translated text */
    int nparams;
    unsigned id;
    unsigned long used;
  } cache[HW_RPG_CACHE];
  unsigned long clock;
  unsigned next_id;
};

static void set_err(hw_reader_res_t *res, const char *what, const char *msg) {
  size_t n;
  snprintf(res->errmsg, sizeof res->errmsg, "%s%s", what, msg ? msg : "");
  n = strlen(res->errmsg); /* libpq's messages end in a newline */
  while (n > 0 && (res->errmsg[n - 1] == '\n' || res->errmsg[n - 1] == ' '))
    res->errmsg[--n] = '\0';
}

/* The primary message of a failed result ("relation \"x\" does not
 * exist"), like sqlite3_errmsg, else the connection's message. */
static void result_err(hw_reader_pg_t *pg, PGresult *r, hw_reader_res_t *res) {
  const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  set_err(res, "", m ? m : PQerrorMessage(pg->conn));
}

int hw_reader_pg_translate(const char *sql, char *out, size_t outlen,
                           int *nparams) {
  size_t o = 0;
  const char *p = sql;
  int max = 0;
#define PUT(c)                                                                 \
  do {                                                                         \
    if (o + 1 >= outlen)                                                       \
      return -ENOSPC;                                                          \
    out[o++] = (c);                                                            \
  } while (0)
  while (*p) {
    if (*p == '\'' || *p == '"') { /* literal or quoted identifier */
      char q = *p;
      int esc = q == '\'' && p > sql && (p[-1] == 'E' || p[-1] == 'e');
      PUT(*p++);
      while (*p) {
        if (esc && *p == '\\' && p[1]) {
          PUT(*p++);
          PUT(*p++);
          continue;
        }
        if (*p == q && p[1] == q) { /* doubled quote: still inside */
          PUT(*p++);
          PUT(*p++);
          continue;
        }
        if (*p == q)
          break;
        PUT(*p++);
      }
      if (*p)
        PUT(*p++);
    } else if (p[0] == '-' && p[1] == '-') {
      while (*p && *p != '\n')
        PUT(*p++);
    } else if (p[0] == '/' && p[1] == '*') {
      PUT(*p++);
      PUT(*p++);
      while (*p && !(p[0] == '*' && p[1] == '/'))
        PUT(*p++);
      if (*p) {
        PUT(*p++);
        PUT(*p++);
      }
    } else if (*p == '$' &&
               (p[1] == '$' || p[1] == '_' || (p[1] >= 'A' && p[1] <= 'Z') ||
                (p[1] >= 'a' && p[1] <= 'z'))) {
      /* $tag$ ... $tag$ (a $N placeholder starts with a digit) */
      const char *t = p + 1;
      size_t tl;
      while (*t == '_' || (*t >= 'A' && *t <= 'Z') ||
             (*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9'))
        t++;
      if (*t != '$') {
        PUT(*p++);
        continue;
      }
      tl = (size_t)(t - p) + 1; /* "$tag$" */
      const char *end = t + 1;
      while (*end && strncmp(end, p, tl) != 0)
        end++;
      end = *end ? end + tl : end;
      while (p < end)
        PUT(*p++);
    } else if (*p == '?' || (*p == '$' && p[1] >= '0' && p[1] <= '9')) {
      int explicit = p[1] >= '0' && p[1] <= '9', num;
      char buf[16];
      p++;
      if (explicit) {
        long v = 0;
        while (*p >= '0' && *p <= '9') {
          v = v * 10 + (*p++ - '0');
          if (v > HW_RPG_MAXPARAMS)
            return -EINVAL;
        }
        if (v < 1)
          return -EINVAL;
        num = (int)v;
      } else {
        num = max + 1;
        if (num > HW_RPG_MAXPARAMS)
          return -EINVAL;
      }
      if (num > max)
        max = num;
      snprintf(buf, sizeof buf, "$%d", num);
      for (char *b = buf; *b; b++)
        PUT(*b);
    } else {
      PUT(*p++);
    }
  }
#undef PUT
  out[o] = '\0';
  *nparams = max;
  return 0;
}

static int connect_db(hw_reader_pg_t *pg, const char *url, char *err,
                      size_t errlen) {
  /* the URL comes last: what it says overrides these defaults */
  const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *vals[] = {"10", "hookwork-reader", url, NULL};
  PGresult *r;
  pg->conn = PQconnectdbParams(keys, vals, 1);
  if (pg->conn == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  if (PQstatus(pg->conn) != CONNECTION_OK) {
    snprintf(err, errlen, "%s", PQerrorMessage(pg->conn));
    err[strcspn(err, "\n")] = '\0';
    PQfinish(pg->conn);
    pg->conn = NULL;
    return -EIO;
  }
  /* this connection only reads, like SQLite's query_only reader */
  r = PQexec(pg->conn, "SET default_transaction_read_only = on");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    snprintf(err, errlen, "%s", PQerrorMessage(pg->conn));
    err[strcspn(err, "\n")] = '\0';
    PQclear(r);
    PQfinish(pg->conn);
    pg->conn = NULL;
    return -EIO;
  }
  PQclear(r);
  return 0;
}

int hw_reader_pg_open(const char *url, hw_reader_pg_t **out, char *err,
                      size_t errlen) {
  hw_reader_pg_t *pg = calloc(1, sizeof *pg);
  int rc;
  if (pg == NULL)
    return -ENOMEM;
  if ((rc = connect_db(pg, url, err, errlen)) != 0) {
    free(pg);
    return rc;
  }
  *out = pg;
  return 0;
}

static void cache_forget(hw_reader_pg_t *pg) {
  for (int i = 0; i < HW_RPG_CACHE; i++) {
    free(pg->cache[i].sql);
    pg->cache[i].sql = NULL;
    pg->cache[i].used = 0;
  }
}

/* The cache slot of sql (translated), preparing it when new; -1 on error
 * (res->errmsg set, *rc the code). */
static int prepare(hw_reader_pg_t *pg, const char *sql, hw_reader_res_t *res,
                   int *rc) {
  int i, oldest = 0, nparams;
  size_t cap = strlen(sql) * 4 + 1; /* "?" -> "$999" at most */
  char name[32], *text = malloc(cap);
  PGresult *r;
  if (text == NULL) {
    *rc = -ENOMEM;
    set_err(res, "out of memory", NULL);
    return -1;
  }
  if ((*rc = hw_reader_pg_translate(sql, text, cap, &nparams)) != 0) {
    free(text);
    set_err(res, "bad placeholder (expected ?1..?999)", NULL);
    *rc = -EINVAL;
    return -1;
  }
  for (i = 0; i < HW_RPG_CACHE; i++) {
    if (pg->cache[i].sql != NULL && strcmp(pg->cache[i].sql, text) == 0) {
      pg->cache[i].used = ++pg->clock;
      free(text);
      return i;
    }
    if (pg->cache[i].used < pg->cache[oldest].used)
      oldest = i;
  }
  if (pg->cache[oldest].sql != NULL) {
    snprintf(name, sizeof name, "DEALLOCATE hwr%u", pg->cache[oldest].id);
    PQclear(PQexec(pg->conn, name));
    free(pg->cache[oldest].sql);
    pg->cache[oldest].sql = NULL;
    pg->cache[oldest].used = 0;
  }
  snprintf(name, sizeof name, "hwr%u", ++pg->next_id);
  r = PQprepare(pg->conn, name, text, 0, NULL);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    result_err(pg, r, res);
    PQclear(r);
    free(text);
    *rc = -EINVAL;
    return -1;
  }
  PQclear(r);
  pg->cache[oldest].sql = text;
  pg->cache[oldest].nparams = nparams;
  pg->cache[oldest].id = pg->next_id;
  pg->cache[oldest].used = ++pg->clock;
  return oldest;
}

/* A bytea value's bytes from its text form ("\x4142", or the old escape
 * format) into v (malloc'd, NUL after the bytes). */
static int bytea_value(const char *s, size_t len, hw_val_t *v) {
  char *b;
  size_t n = 0;
  if (len >= 2 && s[0] == '\\' && s[1] == 'x') {
    if ((b = malloc((len - 2) / 2 + 1)) == NULL)
      return -ENOMEM;
    if (hw_hex_decode(s + 2, len - 2, (unsigned char *) b, &n) != 0) {
      free(b);
      return -EINVAL; /* PostgreSQL's hex output is always well formed */
    }
  } else {
    unsigned char *u = PQunescapeBytea((const unsigned char *)s, &n);
    if (u == NULL || (b = malloc(n + 1)) == NULL) {
      PQfreemem(u);
      return -ENOMEM;
    }
    if (n)
      memcpy(b, u, n);
    PQfreemem(u);
  }
  b[n] = '\0';
  v->type = HW_V_TEXT;
  v->s = b;
  v->n = n;
  return 0;
}

/* Fills v from one field's text form. */
static int field_value(Oid type, const char *s, size_t len, hw_val_t *v) {
  char *end;
  memset(v, 0, sizeof *v);
  switch (type) {
  case OID_INT2:
  case OID_INT4:
  case OID_INT8:
  case OID_OID:
    v->type = HW_V_INT;
    v->i = strtoll(s, NULL, 10);
    return 0;
  case OID_BOOL:
    v->type = HW_V_INT;
    v->i = s[0] == 't';
    return 0;
  case OID_NUMERIC:
    if (strpbrk(s, ".eEN") == NULL) { /* integral (not NaN) */
      errno = 0;
      long long i = strtoll(s, &end, 10);
      if (errno == 0 && *end == '\0') {
        v->type = HW_V_INT;
        v->i = i;
        return 0;
      }
    }
    /* fall through */
  case OID_FLOAT4:
  case OID_FLOAT8:
    v->type = HW_V_REAL;
    v->d = strtod(s, NULL); /* also "Infinity", "-Infinity", "NaN" */
    return 0;
  case OID_BYTEA:
    return bytea_value(s, len, v);
  default: {
    char *t = malloc(len + 1);
    if (t == NULL)
      return -ENOMEM;
    memcpy(t, s, len);
    t[len] = '\0';
    v->type = HW_V_TEXT;
    v->s = t;
    v->n = len;
    return 0;
  }
  }
}

static int copy_result(PGresult *r, int maxrows, hw_reader_res_t *res) {
  int i, j, ncols = PQnfields(r), nrows = PQntuples(r);
  res->ncols = ncols;
  res->names = calloc((size_t)ncols + 1, sizeof *res->names);
  if (res->names == NULL) {
    res->ncols = 0;
    return -ENOMEM;
  }
  for (i = 0; i < ncols; i++)
    if ((res->names[i] = strdup(PQfname(r, i))) == NULL)
      return -ENOMEM;
  if (nrows > maxrows)
    return -E2BIG;
  if (nrows == 0 || ncols == 0)
    return 0;
  res->vals = calloc((size_t)nrows * (size_t)ncols, sizeof *res->vals);
  if (res->vals == NULL)
    return -ENOMEM;
  /* rows count as they fill, so res_free sees every value made so far
   * (calloc'd values are HW_V_NULL) */
  for (i = 0; i < nrows; i++) {
    res->nrows = i + 1;
    for (j = 0; j < ncols; j++) {
      hw_val_t *v = &res->vals[i * ncols + j];
      if (PQgetisnull(r, i, j))
        continue;
      if (field_value(PQftype(r, j), PQgetvalue(r, i, j),
                      (size_t)PQgetlength(r, i, j), v) != 0) {
        memset(v, 0, sizeof *v);
        return -ENOMEM;
      }
    }
  }
  return 0;
}

/* Parameters as text.  A text value with a NUL byte cannot be sent (nor
 * stored) as PostgreSQL text: refused by name. */
static int param_text(const hw_val_t *v, char *num, size_t numlen,
                      const char **out) {
  switch (v->type) {
  case HW_V_INT:
    snprintf(num, numlen, "%lld", (long long)v->i);
    *out = num;
    return 0;
  case HW_V_REAL:
    if (isnan(v->d))
      snprintf(num, numlen, "NaN");
    else if (isinf(v->d))
      snprintf(num, numlen, "%sInfinity", v->d < 0 ? "-" : "");
    else
      snprintf(num, numlen, "%.17g", v->d);
    *out = num;
    return 0;
  case HW_V_TEXT:
    if (memchr(v->s, '\0', v->n) != NULL)
      return -EINVAL;
    *out = v->s; /* reader.c keeps a NUL after every text value */
    return 0;
  default:
    *out = NULL;
    return 0;
  }
}

static int run_once(hw_reader_pg_t *pg, const char *sql, const hw_val_t *vals,
                    int n, int maxrows, hw_reader_res_t *res) {
  int rc = 0, slot, np, i;
  const char **params = NULL;
  char(*nums)[32] = NULL;
  char name[32];
  PGresult *r;
  if ((slot = prepare(pg, sql, res, &rc)) < 0)
    return rc;
  np = pg->cache[slot].nparams;
  /* as SQLite: a missing value is NULL, a value beyond the statement's
   * placeholders is ignored */
  if (np > 0) {
    params = calloc((size_t)np, sizeof *params);
    nums = calloc((size_t)np, sizeof *nums);
    if (params == NULL || nums == NULL) {
      free(params);
      free(nums);
      set_err(res, "out of memory", NULL);
      return -ENOMEM;
    }
  }
  for (i = 0; i < np && i < n; i++)
    if (param_text(&vals[i], nums[i], sizeof nums[i], &params[i]) != 0) {
      snprintf(res->errmsg, sizeof res->errmsg,
               "value %d holds a NUL byte (PostgreSQL text cannot)", i + 1);
      free(params);
      free(nums);
      return -EINVAL;
    }
  snprintf(name, sizeof name, "hwr%u", pg->cache[slot].id);
  r = PQexecPrepared(pg->conn, name, np, params, NULL, NULL, 0);
  free(params);
  free(nums);
  if (PQresultStatus(r) != PGRES_TUPLES_OK &&
      PQresultStatus(r) != PGRES_COMMAND_OK) {
    result_err(pg, r, res);
    PQclear(r);
    return -EIO;
  }
  rc = copy_result(r, maxrows, res);
  PQclear(r);
  if (rc != 0)
    set_err(res, rc == -E2BIG ? "too many rows" : "out of memory", NULL);
  return rc;
}

/* A new connection after the old one broke (prepared statements die with
 * it). */
static int reconnect(hw_reader_pg_t *pg, hw_reader_res_t *res) {
  cache_forget(pg);
  PQreset(pg->conn);
  if (PQstatus(pg->conn) != CONNECTION_OK) {
    set_err(res, "store connection lost: ", PQerrorMessage(pg->conn));
    return -EIO;
  }
  PQclear(PQexec(pg->conn, "SET default_transaction_read_only = on"));
  return 0;
}

int hw_reader_pg_run(hw_reader_pg_t *pg, const char *sql, const hw_val_t *vals,
                     int n, int maxrows, hw_reader_res_t *res) {
  int rc;
  if (PQstatus(pg->conn) != CONNECTION_OK && reconnect(pg, res) != 0)
    return -EIO;
  rc = run_once(pg, sql, vals, n, maxrows, res);
  if (rc != 0 && res->ncols == 0 && PQstatus(pg->conn) != CONNECTION_OK) {
    /* the server restarted or the connection dropped: once more on a new
     * connection (a read is safe to repeat) */
    memset(res->errmsg, 0, sizeof res->errmsg);
    if (reconnect(pg, res) != 0)
      return -EIO;
    rc = run_once(pg, sql, vals, n, maxrows, res);
  }
  return rc;
}

void hw_reader_pg_close(hw_reader_pg_t *pg) {
  if (pg == NULL)
    return;
  cache_forget(pg);
  PQfinish(pg->conn);
  free(pg);
}
