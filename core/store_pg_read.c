/* store_pg_read: the PostgreSQL backend's reads connection (synchronous
 * prepared queries, id blocks), the conversion of values both ways, the
 * schema versions and `hookwork migrate` (see store_pg.h).
 *
 * Owns: the reads connection's state inside hw_pg_t (rd, rd_reset_at,
 * oids, id blocks).  Uses: libpq, store_sql_pg.h. */
#include "store_pg_int.h"
#include "store_sql_pg.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hw_pg_is_url(const char *where) {
  return where != NULL && (strncmp(where, "postgres://", 11) == 0 ||
                           strncmp(where, "postgresql://", 13) == 0);
}

void hw_pg_redact(const char *url, char *out, size_t len) {
  const char *scheme = strstr(url, "://"), *at, *colon, *pw, *end;
  size_t n = 0;
  char buf[1024];
  if (len == 0)
    return;
  snprintf(buf, sizeof buf, "%s", url);
  if (scheme != NULL) {
    scheme += 3;
    at = strchr(scheme, '@');
    colon = strchr(scheme, ':');
    if (at != NULL && colon != NULL && colon < at) {
      n = (size_t) (colon + 1 - url);
      snprintf(buf, sizeof buf, "%.*s***%s", (int) n, url, at);
    }
  }
  if ((pw = strstr(buf, "password=")) != NULL) {
    char tmp[1024];
    pw += 9;
    end = strchr(pw, '&');
    snprintf(tmp, sizeof tmp, "%.*s***%s", (int) (pw - buf), buf,
             end ? end : "");
    snprintf(buf, sizeof buf, "%s", tmp);
  }
  snprintf(out, len, "%s", buf);
}

void hw_pg__quiet(void *arg, const char *msg) { (void) arg, (void) msg; }

/* libpq's messages end in a newline and may span lines: keep the first */
void hw_pg__copy_msg(char *dst, size_t len, const char *prefix,
                     const char *msg) {
  size_t k;
  snprintf(dst, len, "%s%s", prefix, msg && *msg ? msg : "unknown error");
  k = strcspn(dst, "\n");
  dst[k] = '\0';
  while (k > 0 && (dst[k - 1] == ' ' || dst[k - 1] == '\r'))
    dst[--k] = '\0';
}

/* Every connection: a bounded connect time and our name, then the URL's
 * own settings (processed last, so they win). */
PGconn *hw_pg__connect_sync(const char *url, char *err, size_t len) {
  const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *vals[] = {"5", "hookwork", url, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (c == NULL || PQstatus(c) != CONNECTION_OK) {
    hw_pg__copy_msg(err, len, "", c ? PQerrorMessage(c) : "out of memory");
    PQfinish(c);
    return NULL;
  }
  PQsetNoticeProcessor(c, hw_pg__quiet, NULL);
  return c;
}

static int exec_ok(PGconn *c, const char *sql, char *err, size_t len) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
           PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok)
    hw_pg__copy_msg(err, len, "", PQresultErrorMessage(r));
  PQclear(r);
  return ok ? 0 : -EIO;
}

/* ---- schema ------------------------------------------------------------ */

#define NMIGRATIONS ((int) (sizeof hw_pg_migrations / sizeof *hw_pg_migrations))
_Static_assert(NMIGRATIONS == HW_PG_SCHEMA_VERSION,
               "one migration per schema version");

/* Checks (and with migrate, creates or upgrades) the hw_pg__schema, in one
 * transaction under an advisory lock so nodes starting together do it
 * once.  An empty database gets the schema in any mode; an older one only
 * with migrate; a newer one never. */
int hw_pg__schema(PGconn *c, int migrate, char *what, size_t wlen, char *err,
                  size_t len) {
  PGresult *r;
  int version = 0, rc = 0, v, empty = 1;
  char sql[200];

  if (exec_ok(c, "BEGIN", err, len) != 0 ||
      exec_ok(c, "SELECT pg_advisory_xact_lock(7283160415)", err, len) != 0 ||
      exec_ok(c, hw_pg_version_sql, err, len) != 0)
    goto fail;
  r = PQexec(c, "SELECT version FROM schema_version");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    hw_pg__copy_msg(err, len, "", PQresultErrorMessage(r));
    PQclear(r);
    goto fail;
  }
  if (PQntuples(r) > 0) {
    version = atoi(PQgetvalue(r, 0, 0));
    empty = 0;
  }
  PQclear(r);
  if (version > HW_PG_SCHEMA_VERSION) {
    snprintf(err, len, "the database's schema version %d is newer than this "
             "engine's %d: run a newer hookwork", version,
             HW_PG_SCHEMA_VERSION);
    rc = -EINVAL;
    goto fail;
  }
  if (!empty && version < HW_PG_SCHEMA_VERSION && !migrate) {
    snprintf(err, len, "schema version %d is older than this engine's %d: "
             "run `hookwork migrate`", version, HW_PG_SCHEMA_VERSION);
    rc = -EINVAL;
    goto fail;
  }
  for (v = version + 1; v <= HW_PG_SCHEMA_VERSION; v++)
    if (exec_ok(c, hw_pg_migrations[v - 1], err, len) != 0)
      goto fail;
  snprintf(sql, sizeof sql, "INSERT INTO schema_version(one, version, updated)"
           " VALUES(1, %d, extract(epoch FROM now())) ON CONFLICT(one) DO"
           " UPDATE SET version = excluded.version, updated = excluded.updated",
           HW_PG_SCHEMA_VERSION);
  if ((empty || version < HW_PG_SCHEMA_VERSION) &&
      exec_ok(c, sql, err, len) != 0)
    goto fail;
  if (exec_ok(c, "COMMIT", err, len) != 0)
    goto fail;
  if (empty)
    snprintf(what, wlen, "created schema version %d", HW_PG_SCHEMA_VERSION);
  else if (version < HW_PG_SCHEMA_VERSION)
    snprintf(what, wlen, "upgraded schema version %d to %d", version,
             HW_PG_SCHEMA_VERSION);
  else
    snprintf(what, wlen, "schema version %d is current: nothing to do",
             version);
  return 0;
fail:
  PQclear(PQexec(c, "ROLLBACK"));
  return rc ? rc : -EIO;
}

int hw_pg_migrate(const char *url, char *what, size_t whatlen, char *err,
                  size_t errlen) {
  PGconn *c = hw_pg__connect_sync(url, err, errlen);
  int rc;
  if (c == NULL)
    return -EIO;
  rc = hw_pg__schema(c, 1, what, whatlen, err, errlen);
  PQfinish(c);
  return rc;
}

/* ---- values ------------------------------------------------------------- */

/* Text-format parameters: numbers printed, BYTEA hex-escaped, text as is
 * (copied when it may lack its terminator).  *heap collects what to free. */
int hw_pg__params(const hw_pg_t *pg, int id, const hw_val_t *v, int n,
                  int copy, const char **pv, char (*nb)[32], char **heap) {
  int i;
  for (i = 0; i < n; i++)
    heap[i] = NULL;
  for (i = 0; i < n; i++) {
    switch (v[i].type) {
    case HW_V_INT:
      snprintf(nb[i], 32, "%lld", (long long) v[i].i);
      pv[i] = nb[i];
      break;
    case HW_V_REAL:
      snprintf(nb[i], 32, "%.17g", v[i].d);
      pv[i] = nb[i];
      break;
    case HW_V_TEXT:
      if (pg->oids[id][i] == OID_BYTEA) {
        static const char hex[] = "0123456789abcdef";
        size_t k;
        char *h = malloc(2 * v[i].n + 3);
        if (h == NULL)
          goto nomem;
        h[0] = '\\';
        h[1] = 'x';
        for (k = 0; k < v[i].n; k++) {
          h[2 + 2 * k] = hex[(unsigned char) v[i].s[k] >> 4];
          h[3 + 2 * k] = hex[(unsigned char) v[i].s[k] & 15];
        }
        h[2 + 2 * v[i].n] = '\0';
        pv[i] = heap[i] = h;
      } else if (copy) {
        char *t = malloc(v[i].n + 1);
        if (t == NULL)
          goto nomem;
        memcpy(t, v[i].s, v[i].n);
        t[v[i].n] = '\0';
        pv[i] = heap[i] = t;
      } else {
        pv[i] = v[i].s; /* an op's copy ends in '\0' */
      }
      break;
    default: pv[i] = NULL; break;
    }
  }
  return 0;
nomem:
  for (i = 0; i < n; i++)
    free(heap[i]);
  return -ENOMEM;
}

void hw_pg__free_heap(char **heap, int n) {
  int i;
  for (i = 0; i < n; i++)
    free(heap[i]);
}

/* ---- the reads connection ---------------------------------------------- */

static int set_node(PGconn *c, const char *node, char *err, size_t len) {
  const char *v[1] = {node};
  PGresult *r = PQexecParams(c, "SELECT set_config('hookwork.node', $1,"
                             " false)", 1, NULL, v, NULL, NULL, 0);
  int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok)
    hw_pg__copy_msg(err, len, "hookwork.node: ", PQresultErrorMessage(r));
  PQclear(r);
  return ok ? 0 : -EIO;
}

/* Prepares every statement on the reads connection and learns the types
 * of their values; the value counts must be store_sql.h's. */
int hw_pg__rd_setup(hw_pg_t *pg, char *err, size_t len) {
  int i, k, np;
  if (set_node(pg->rd, pg->node, err, len) != 0)
    return -EIO;
  for (i = 0; i < HW_PG_NSTMTS; i++) {
    PGresult *r;
    if (strcmp(hw_pg_stmts[i].name, hw_store__stmt_name(i)) != 0) {
      snprintf(err, len, "PostgreSQL statement %d is %s, not %s", i,
               hw_pg_stmts[i].name, hw_store__stmt_name(i));
      return -EINVAL;
    }
    r = PQprepare(pg->rd, hw_pg_stmts[i].name, hw_pg_stmts[i].sql, 0, NULL);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      char pre[100];
      snprintf(pre, sizeof pre, "statement %s: ", hw_pg_stmts[i].name);
      hw_pg__copy_msg(err, len, pre, PQresultErrorMessage(r));
      PQclear(r);
      return -EIO;
    }
    PQclear(r);
    r = PQdescribePrepared(pg->rd, hw_pg_stmts[i].name);
    np = PQresultStatus(r) == PGRES_COMMAND_OK ? PQnparams(r) : -1;
    if (np != hw_store_stmt_nparams(i) || np > HW_OP_MAXV) {
      snprintf(err, len, "statement %s binds %d values in PostgreSQL, %d in"
               " SQLite", hw_pg_stmts[i].name, np, hw_store_stmt_nparams(i));
      PQclear(r);
      return -EINVAL;
    }
    for (k = 0; k < np; k++)
      pg->oids[i][k] = PQparamtype(r, k);
    PQclear(r);
  }
  if (HW_PG_NSTMTS != i || hw_store_stmt_nparams(i) != -1) {
    snprintf(err, len, "store_sql_pg.h lists %d statements, store_sql.h"
             " more", HW_PG_NSTMTS);
    return -EINVAL;
  }
  return 0;
}

/* A lost reads connection is reopened at most every 200 ms (a query
 * meanwhile fails at once, as the loop must not wait for a dead server). */
int hw_pg__rd_ensure(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  char err[256];
  uint64_t now = uv_hrtime();
  if (pg->rd != NULL && PQstatus(pg->rd) == CONNECTION_OK)
    return 0;
  if (pg->opened && (pg->state == PG_DOWN || pg->state == PG_CONNECTING)) {
    /* the writes connection is being reopened on the loop: a blocking
     * connect here would only stall the loop for the same answer */
    uv_mutex_lock(&st->mu);
    hw_pg__copy_msg(st->errmsg, sizeof st->errmsg, "store unavailable: ",
             st->reason);
    uv_mutex_unlock(&st->mu);
    return -EIO;
  }
  if (now - pg->rd_reset_at < 200 * (uint64_t) 1000000)
    return -EIO;
  pg->rd_reset_at = now;
  PQfinish(pg->rd);
  pg->rd = hw_pg__connect_sync(pg->url, err, sizeof err);
  if (pg->rd == NULL || hw_pg__rd_setup(pg, err, sizeof err) != 0) {
    hw_pg__copy_msg(st->errmsg, sizeof st->errmsg, "store unavailable: ", err);
    PQfinish(pg->rd);
    pg->rd = NULL;
    return -EIO;
  }
  return 0;
}

static PGresult *rd_exec(hw_store_t *st, int id, int n, const char **pv) {
  hw_pg_t *pg = st->pg;
  PGresult *r;
  int tries;
  for (tries = 0; tries < 2; tries++) {
    if (hw_pg__rd_ensure(st) != 0)
      return NULL;
    r = PQexecPrepared(pg->rd, hw_pg_stmts[id].name, n, pv, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK ||
        PQresultStatus(r) == PGRES_COMMAND_OK)
      return r;
    hw_pg__copy_msg(st->errmsg, sizeof st->errmsg, "", PQresultErrorMessage(r));
    PQclear(r);
    if (PQstatus(pg->rd) == CONNECTION_OK)
      return NULL; /* the statement's own error */
    pg->rd_reset_at = 0; /* the connection was lost: reopen once now */
  }
  return NULL;
}

int hw_pg__query(hw_store_t *st, int id, const hw_val_t *vals, int n,
                 hw_store_row_cb cb, void *arg) {
  hw_pg_t *pg = st->pg;
  const char *pv[HW_OP_MAXV], *names[32];
  char nb[HW_OP_MAXV][32], *heap[HW_OP_MAXV];
  unsigned char *bytes[32];
  hw_val_t cols[32];
  PGresult *r;
  int nr, nc, i, c;

  if (id < 0 || id >= HW_PG_NSTMTS || hw_store_stmt_is_write(id)) {
    snprintf(st->errmsg, sizeof st->errmsg, "no query statement %d", id);
    return -EINVAL;
  }
  if (n != hw_store_stmt_nparams(id)) {
    snprintf(st->errmsg, sizeof st->errmsg, "%s takes %d values, got %d",
             hw_pg_stmts[id].name, hw_store_stmt_nparams(id), n);
    return -EINVAL;
  }
  if (hw_pg__params(pg, id, vals, n, 1, pv, nb, heap) != 0) {
    snprintf(st->errmsg, sizeof st->errmsg, "out of memory");
    return -ENOMEM;
  }
  r = rd_exec(st, id, n, pv);
  hw_pg__free_heap(heap, n);
  if (r == NULL) {
    char m[256], pre[80];
    snprintf(m, sizeof m, "%s", st->errmsg);
    snprintf(pre, sizeof pre, "%s: ", hw_pg_stmts[id].name);
    hw_pg__copy_msg(st->errmsg, sizeof st->errmsg, pre, m);
    return -EIO;
  }
  nr = PQntuples(r);
  nc = PQnfields(r) > 32 ? 32 : PQnfields(r);
  for (c = 0; c < nc; c++)
    names[c] = PQfname(r, c);
  for (i = 0; i < nr; i++) {
    int stop;
    for (c = 0; c < nc; c++) {
      const char *s = PQgetvalue(r, i, c);
      bytes[c] = NULL;
      memset(&cols[c], 0, sizeof cols[c]);
      if (PQgetisnull(r, i, c)) {
        cols[c].type = HW_V_NULL;
        continue;
      }
      switch (PQftype(r, c)) {
      case OID_INT8: case OID_INT4: case OID_INT2:
        cols[c].type = HW_V_INT;
        cols[c].i = strtoll(s, NULL, 10);
        break;
      case OID_BOOL:
        cols[c].type = HW_V_INT;
        cols[c].i = s[0] == 't';
        break;
      case OID_FLOAT8: case OID_FLOAT4: case OID_NUMERIC:
        cols[c].type = HW_V_REAL;
        cols[c].d = strtod(s, NULL);
        break;
      case OID_BYTEA: {
        size_t len = 0;
        bytes[c] = PQunescapeBytea((const unsigned char *) s, &len);
        cols[c].type = HW_V_TEXT;
        cols[c].s = bytes[c] ? (const char *) bytes[c] : "";
        cols[c].n = bytes[c] ? len : 0;
        break;
      }
      default:
        cols[c].type = HW_V_TEXT;
        cols[c].s = s;
        cols[c].n = (size_t) PQgetlength(r, i, c);
      }
    }
    stop = cb(nc, cols, names, arg);
    for (c = 0; c < nc; c++)
      PQfreemem(bytes[c]);
    if (stop)
      break;
  }
  PQclear(r);
  return 0;
}

/* Ids: each nextval of a kind's sequence is a block of HW_PG_ID_BLOCK ids
 * only this node hands out. */
/* One block from the kind's sequence: its first id in *first. */
static void analyze_once(hw_store_t *st, int64_t first);

static int fetch_block(hw_store_t *st, int kind, int64_t *first) {
  hw_pg_t *pg = st->pg;
  char sql[80];
  PGresult *r;
  if (hw_pg__rd_ensure(st) != 0)
    return -EIO;
  snprintf(sql, sizeof sql, "SELECT nextval('%s')", hw_pg_id_seq[kind]);
  r = PQexec(pg->rd, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    hw_pg__copy_msg(st->errmsg, sizeof st->errmsg, "ids: ",
                    PQresultErrorMessage(r));
    PQclear(r);
    return -EIO;
  }
  *first = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  if (kind == HW_ID_TX)
    analyze_once(st, *first);
  return 0;
}

/* Until tx has statistics the planner has no idea how selective the match
 * lookup's columns are: on a table filled since its creation (autovacuum
 * analyzes it only on its next round, up to a minute later) it took the
 * index tx_cycle (cycle, state) for find_waiting_desc and read every
 * waiting row of the cycle (2.4-5 ms with 20,000 parked, under 0.1 ms
 * once analyzed).  So once HW_PG_ANALYZE_AT transactions were created and
 * tx was never analyzed, the store analyzes it (looked at when a block of
 * tx ids is fetched, until done once; later statistics are autovacuum's).
 * A failing ANALYZE (another owner) is logged and not retried. */
#define HW_PG_ANALYZE_AT 1000
static void analyze_once(hw_store_t *st, int64_t first) {
  hw_pg_t *pg = st->pg;
  PGresult *r;
  int need;
  if (pg->analyzed || first < HW_PG_ANALYZE_AT)
    return;
  r = PQexec(pg->rd, "SELECT last_analyze IS NULL AND last_autoanalyze IS"
             " NULL FROM pg_stat_user_tables WHERE relid = 'tx'::regclass");
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
    PQclear(r); /* look again at the next block */
    return;
  }
  need = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  pg->analyzed = 1;
  if (!need)
    return;
  r = PQexec(pg->rd, "ANALYZE tx");
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    hw_log("store", "PostgreSQL: ANALYZE tx failed (the match lookup may be "
           "slow until autovacuum analyzes it): %s", PQresultErrorMessage(r));
  PQclear(r);
}

/* A spare block is fetched while half of the current one is left, so a
 * server out of reach for a while does not stop runs that need ids (their
 * history rows) before the store reports itself failing. */
int hw_pg__next_id(hw_store_t *st, int kind, int64_t *id) {
  hw_pg_t *pg = st->pg;
  int64_t first;
  if (kind < 0 || kind >= HW_ID_KINDS)
    return -EINVAL;
  if (pg->id_next[kind] == 0 || pg->id_next[kind] > pg->id_end[kind]) {
    if (pg->id_spare[kind] != 0) {
      first = pg->id_spare[kind];
      pg->id_spare[kind] = 0;
    } else if (fetch_block(st, kind, &first) != 0) {
      return -EIO;
    }
    pg->id_next[kind] = first;
    pg->id_end[kind] = first + HW_PG_ID_BLOCK - 1;
  }
  *id = pg->id_next[kind]++;
  st->ids[kind] = *id;
  if (pg->id_spare[kind] == 0 &&
      pg->id_end[kind] - pg->id_next[kind] < HW_PG_ID_BLOCK / 2 &&
      fetch_block(st, kind, &first) == 0)
    pg->id_spare[kind] = first;
  return 0;
}

