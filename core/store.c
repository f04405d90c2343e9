/* store: SQLite in WAL mode, with group commit off the loop thread.
 *
 * Writes are copied into hw_op_t records on a queue.  hw_store_kick moves the
 * whole queue into a batch and runs it in uv_queue_work: BEGIN, every op,
 * COMMIT (fsync), so one fsync serves every request that arrived meanwhile.
 * Flush waiters queued with those writes are called from the after-work
 * callback on the loop thread.  Reads use a second connection on the loop.
 */
#include "store.h"
#include "store_sql.h"
#include "log.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HW_OP_MAXV 12

typedef struct hw_op_s {
  struct hw_op_s *next;
  int id;
  int n;
  hw_val_t v[HW_OP_MAXV];
  char *buf; /* one allocation holding every text value */
} hw_op_t;

typedef struct hw_waiter_s {
  struct hw_waiter_s *next;
  hw_store_cb cb;
  void *arg;
} hw_waiter_t;

typedef struct hw_batch_s {
  uv_work_t work;
  hw_store_t *st;
  hw_op_t *ops;
  hw_waiter_t *waiters;
  size_t nops;
  int status;
} hw_batch_t;

struct hw_store_s {
  uv_loop_t *loop;
  sqlite3 *wr, *rd;
  sqlite3_stmt *wstmt[HW_NSTMTS];
  sqlite3_stmt *rstmt[HW_NSTMTS];
  hw_op_t *head, **tail;       /* queued writes */
  hw_waiter_t *whead, **wtail; /* flush waiters for the queued writes */
  size_t queued;
  hw_batch_t *inflight;
  size_t inflight_ops;
  char errmsg[256];
};

static int open_conn(const char *path, sqlite3 **db, char *err, size_t len) {
  int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE |
                           SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, len, "%s: %s", path, *db ? sqlite3_errmsg(*db) : "no memory");
    return -EIO;
  }
  sqlite3_busy_timeout(*db, 10000);
  /* synchronous=FULL: a commit is on disk before its requests are acked. */
  rc = sqlite3_exec(*db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                    "PRAGMA foreign_keys=OFF; PRAGMA cache_size=-16000;",
                    NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, len, "%s: %s", path, sqlite3_errmsg(*db));
    return -EIO;
  }
  return 0;
}

static int prepare_all(hw_store_t *st, char *err, size_t len) {
  int i;
  for (i = 0; i < HW_NSTMTS; i++) {
    sqlite3 *db = hw_stmts[i].write ? st->wr : st->rd;
    sqlite3_stmt **slot = hw_stmts[i].write ? &st->wstmt[i] : &st->rstmt[i];
    if (sqlite3_prepare_v3(db, hw_stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                           slot, NULL) != SQLITE_OK) {
      snprintf(err, len, "statement %s: %s", hw_stmts[i].name,
               sqlite3_errmsg(db));
      return -EIO;
    }
  }
  return 0;
}

int hw_store_open(uv_loop_t *loop, const char *dir, hw_store_t **out,
                  char *err, size_t errlen) {
  char path[4096];
  hw_store_t *st;
  int rc;

  st = calloc(1, sizeof *st);
  if (st == NULL)
    return -ENOMEM;
  st->loop = loop;
  st->tail = &st->head;
  st->wtail = &st->whead;
  snprintf(path, sizeof path, "%s/hookwork.db", dir);
  rc = open_conn(path, &st->wr, err, errlen);
  if (rc == 0 && sqlite3_exec(st->wr, hw_schema_sql, NULL, NULL, NULL) !=
                     SQLITE_OK) {
    snprintf(err, errlen, "%s: schema: %s", path, sqlite3_errmsg(st->wr));
    rc = -EIO;
  }
  if (rc == 0)
    rc = open_conn(path, &st->rd, err, errlen);
  if (rc == 0)
    rc = prepare_all(st, err, errlen);
  if (rc != 0) {
    hw_store_close(st);
    return rc;
  }
  *out = st;
  return 0;
}

int hw_store_stmt_id(const char *name) {
  int i;
  for (i = 0; i < HW_NSTMTS; i++)
    if (strcmp(hw_stmts[i].name, name) == 0)
      return i;
  return -1;
}

int hw_store_stmt_is_write(int id) {
  return id >= 0 && id < HW_NSTMTS && hw_stmts[id].write;
}

static void bind_vals(sqlite3_stmt *s, const hw_val_t *v, int n) {
  int i;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  for (i = 0; i < n; i++) {
    switch (v[i].type) {
    case HW_V_INT: sqlite3_bind_int64(s, i + 1, v[i].i); break;
    case HW_V_REAL: sqlite3_bind_double(s, i + 1, v[i].d); break;
    case HW_V_TEXT:
      sqlite3_bind_text(s, i + 1, v[i].s, (int) v[i].n, SQLITE_STATIC);
      break;
    default: sqlite3_bind_null(s, i + 1); break;
    }
  }
}

int hw_store_write(hw_store_t *st, int id, const hw_val_t *vals, int n) {
  hw_op_t *op;
  size_t total = 0, off = 0;
  int i;

  if (!hw_store_stmt_is_write(id) || n > HW_OP_MAXV || n < 0)
    return -EINVAL;
  for (i = 0; i < n; i++)
    if (vals[i].type == HW_V_TEXT)
      total += vals[i].n + 1;
  op = malloc(sizeof *op);
  if (op == NULL)
    return -ENOMEM;
  op->buf = total ? malloc(total) : NULL;
  if (total && op->buf == NULL) {
    free(op);
    return -ENOMEM;
  }
  op->next = NULL;
  op->id = id;
  op->n = n;
  for (i = 0; i < n; i++) {
    op->v[i] = vals[i];
    if (vals[i].type == HW_V_TEXT) {
      memcpy(op->buf + off, vals[i].s, vals[i].n);
      op->buf[off + vals[i].n] = '\0';
      op->v[i].s = op->buf + off;
      off += vals[i].n + 1;
    }
  }
  *st->tail = op;
  st->tail = &op->next;
  st->queued++;
  return 0;
}

int hw_store_flush(hw_store_t *st, hw_store_cb cb, void *arg) {
  hw_waiter_t *w = malloc(sizeof *w);
  if (w == NULL)
    return -ENOMEM;
  w->next = NULL;
  w->cb = cb;
  w->arg = arg;
  *st->wtail = w;
  st->wtail = &w->next;
  return 0;
}

/* Worker thread: one SQLite transaction for the whole batch.  A failing op
 * (a constraint, say) is logged and skipped so it cannot sink the others;
 * a failing COMMIT fails the batch. */
static void batch_work(uv_work_t *req) {
  hw_batch_t *b = req->data;
  hw_store_t *st = b->st;
  hw_op_t *op;

  b->status = 0;
  if (sqlite3_exec(st->wr, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
    b->status = -EIO;
    return;
  }
  for (op = b->ops; op != NULL; op = op->next) {
    sqlite3_stmt *s = st->wstmt[op->id];
    bind_vals(s, op->v, op->n);
    if (sqlite3_step(s) != SQLITE_DONE)
      hw_log("store", "write %s failed: %s", hw_stmts[op->id].name,
             sqlite3_errmsg(st->wr));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  if (sqlite3_exec(st->wr, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(st->errmsg, sizeof st->errmsg, "commit: %s",
             sqlite3_errmsg(st->wr));
    sqlite3_exec(st->wr, "ROLLBACK", NULL, NULL, NULL);
    b->status = -EIO;
  }
}

static void free_ops(hw_op_t *op) {
  while (op != NULL) {
    hw_op_t *next = op->next;
    free(op->buf);
    free(op);
    op = next;
  }
}

static void batch_done(uv_work_t *req, int status) {
  hw_batch_t *b = req->data;
  hw_store_t *st = b->st;
  hw_waiter_t *w = b->waiters;
  int rc = status < 0 ? status : b->status;

  if (rc < 0)
    hw_log("store", "batch of %zu writes failed: %s", b->nops,
           st->errmsg[0] ? st->errmsg : "cancelled");
  st->inflight = NULL;
  st->inflight_ops = 0;
  free_ops(b->ops);
  free(b);
  while (w != NULL) {
    hw_waiter_t *next = w->next;
    w->cb(rc, w->arg);
    free(w);
    w = next;
  }
  hw_store_kick(st);
}

void hw_store_kick(hw_store_t *st) {
  hw_batch_t *b;

  if (st->inflight != NULL || (st->head == NULL && st->whead == NULL))
    return;
  b = calloc(1, sizeof *b);
  if (b == NULL)
    return; /* retried on the next kick */
  b->st = st;
  b->ops = st->head;
  b->nops = st->queued;
  b->waiters = st->whead;
  b->work.data = b;
  st->head = NULL;
  st->tail = &st->head;
  st->whead = NULL;
  st->wtail = &st->whead;
  st->queued = 0;
  st->inflight = b;
  st->inflight_ops = b->nops;
  if (uv_queue_work(st->loop, &b->work, batch_work, batch_done) != 0) {
    batch_work(&b->work); /* cannot happen with a live loop; stay correct */
    batch_done(&b->work, 0);
  }
}

size_t hw_store_pending(const hw_store_t *st) {
  return st->queued + st->inflight_ops + (st->whead != NULL);
}

int hw_store_query(hw_store_t *st, int id, const hw_val_t *vals, int n,
                   hw_store_row_cb cb, void *arg) {
  sqlite3_stmt *s;
  hw_val_t cols[32];
  const char *names[32];
  int rc, nc, i;

  if (id < 0 || id >= HW_NSTMTS || hw_stmts[id].write)
    return -EINVAL;
  s = st->rstmt[id];
  bind_vals(s, vals, n);
  nc = sqlite3_column_count(s);
  if (nc > 32)
    nc = 32;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    for (i = 0; i < nc; i++) {
      names[i] = sqlite3_column_name(s, i);
      switch (sqlite3_column_type(s, i)) {
      case SQLITE_INTEGER:
        cols[i].type = HW_V_INT;
        cols[i].i = sqlite3_column_int64(s, i);
        break;
      case SQLITE_FLOAT:
        cols[i].type = HW_V_REAL;
        cols[i].d = sqlite3_column_double(s, i);
        break;
      case SQLITE_NULL: cols[i].type = HW_V_NULL; break;
      default:
        cols[i].type = HW_V_TEXT;
        cols[i].s = (const char *) sqlite3_column_text(s, i);
        cols[i].n = (size_t) sqlite3_column_bytes(s, i);
      }
    }
    if (cb(nc, cols, names, arg) != 0)
      break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    snprintf(st->errmsg, sizeof st->errmsg, "%s: %s", hw_stmts[id].name,
             sqlite3_errmsg(st->rd));
    sqlite3_reset(s);
    return -EIO;
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return 0;
}

int hw_store_exec(hw_store_t *st, const char *sql) {
  if (sqlite3_exec(st->rd, sql, NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(st->errmsg, sizeof st->errmsg, "%s", sqlite3_errmsg(st->rd));
    return -EIO;
  }
  return 0;
}

const char *hw_store_errmsg(hw_store_t *st) { return st->errmsg; }

/* Shutdown path: the loop has stopped, so the in-flight batch (if any) was
 * completed by the loop drain; what is still queued is committed here. */
int hw_store_close(hw_store_t *st) {
  int i, rc = 0;

  if (st == NULL)
    return 0;
  if (st->head != NULL || st->whead != NULL) {
    hw_batch_t b;
    memset(&b, 0, sizeof b);
    b.st = st;
    b.ops = st->head;
    b.work.data = &b;
    batch_work(&b.work);
    rc = b.status;
    free_ops(st->head);
    while (st->whead != NULL) {
      hw_waiter_t *w = st->whead;
      st->whead = w->next;
      w->cb(rc, w->arg);
      free(w);
    }
    st->head = NULL;
  }
  for (i = 0; i < HW_NSTMTS; i++) {
    sqlite3_finalize(st->wstmt[i]);
    sqlite3_finalize(st->rstmt[i]);
  }
  if (st->rd != NULL && sqlite3_close(st->rd) != SQLITE_OK)
    rc = -EBUSY;
  if (st->wr != NULL && sqlite3_close(st->wr) != SQLITE_OK)
    rc = -EBUSY;
  free(st);
  return rc;
}
