/* store: SQLite in WAL mode, with group commit on a writer thread.
 *
 * Writes are copied into hw_op_t records.  During one loop iteration they
 * collect on the loop thread; hw_store_kick (once per iteration) seals them
 * and hands them to the writer thread, which commits everything handed over
 * since its last commit in one SQLite transaction and one fsync, back to
 * back with the loop's own work (so the loop never waits for a disk and the
 * disk never waits for the loop).  Every op has a sequence number; a flush
 * waiter is told once the writer has committed past its sequence, through a
 * uv_async handle.  Reads use a second connection on the loop thread.
 * Whole iterations are sealed together, so the writes one run makes at one
 * point always commit together.
 */
#include "store.h"
#include "store_sql.h"
#include "log.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
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
  uint64_t seq;
  hw_store_cb cb;
  void *arg;
} hw_waiter_t;

struct hw_store_s {
  uv_loop_t *loop;
  sqlite3 *wr, *rd;
  sqlite3_stmt *wstmt[HW_NSTMTS];
  sqlite3_stmt *rstmt[HW_NSTMTS];
  /* loop thread only */
  hw_op_t *head, **tail;       /* written this iteration, not yet sealed */
  hw_waiter_t *whead, **wtail; /* in sequence order */
  uint64_t wlast;              /* seq of the newest waiter */
  uint64_t seq;                /* last op written */
  uint64_t sealed;             /* last op handed to the writer */
  uv_async_t *async;           /* writer -> loop: something committed */
  uv_timer_t *linger;          /* seals writes nobody waits for */
  size_t unsealed;             /* ops written since the last seal */
  /* shared, under mu */
  uv_mutex_t mu;
  uv_cond_t cv;
  hw_op_t *shead, **stail;     /* sealed, waiting for the writer */
  uint64_t shead_last;         /* seq of the last sealed op */
  uint64_t committed;          /* writer has finished ops up to here */
  uint64_t fail_lo, fail_hi;   /* ops in (lo, hi] failed to commit */
  int stop;
  /* writer thread only */
  uv_thread_t thread;
  int thread_started;
  /* checkpointer thread: copies the WAL into the database file four times
   * a second with its own connection (PASSIVE: it never blocks the
   * writer), so the writer's own automatic checkpoint, which keeps the WAL
   * bounded, finds little left to copy and stalls commits only briefly */
  sqlite3 *ck;
  uv_cond_t ckcv;              /* wakes the checkpointer to stop */
  uv_thread_t ckthread;
  int ck_started;
  char errmsg[256];
};

static void writer_main(void *arg);
static void checkpointer_main(void *arg);
static void on_async(uv_async_t *h);

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

/* A new file gets the schema and HW_SCHEMA_VERSION; a file made by another
 * version is refused with a clear message rather than misread. */
static int apply_schema(sqlite3 *db, const char *path, char *err,
                        size_t len) {
  sqlite3_stmt *s = NULL;
  int version = -1, tables = 0;

  if (sqlite3_prepare_v2(db, "SELECT (SELECT user_version FROM"
                         " pragma_user_version), (SELECT count(*) FROM"
                         " sqlite_master)", -1, &s, NULL) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    version = sqlite3_column_int(s, 0);
    tables = sqlite3_column_int(s, 1);
  }
  sqlite3_finalize(s);
  if (tables > 0 && version != HW_SCHEMA_VERSION) {
    snprintf(err, len, "%s was written by another hookwork version (schema "
             "%d, this one reads %d); move it away or use another --data",
             path, version, HW_SCHEMA_VERSION);
    return -EINVAL;
  }
  if (sqlite3_exec(db, hw_schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_exec(db, "PRAGMA user_version = " HW_STR(HW_SCHEMA_VERSION),
                   NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(err, len, "%s: schema: %s", path, sqlite3_errmsg(db));
    return -EIO;
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
  st->stail = &st->shead;
  if (uv_mutex_init(&st->mu) != 0 || uv_cond_init(&st->cv) != 0 ||
      uv_cond_init(&st->ckcv) != 0) {
    free(st);
    return -ENOMEM;
  }
  snprintf(path, sizeof path, "%s/hookwork.db", dir);
  rc = open_conn(path, &st->wr, err, errlen);
  if (rc == 0)
    rc = apply_schema(st->wr, path, err, errlen);
  if (rc == 0)
    rc = open_conn(path, &st->rd, err, errlen);
  if (rc == 0)
    rc = open_conn(path, &st->ck, err, errlen);
  if (rc == 0) /* lookups of parked transactions: keep more index in memory */
    sqlite3_exec(st->rd, "PRAGMA cache_size=-32000", NULL, NULL, NULL);

  if (rc == 0)
    rc = prepare_all(st, err, errlen);
  if (rc == 0 && (st->async = malloc(sizeof *st->async)) == NULL)
    rc = -ENOMEM;
  if (rc == 0 && (st->linger = malloc(sizeof *st->linger)) == NULL)
    rc = -ENOMEM;
  if (rc == 0) {
    uv_timer_init(loop, st->linger);
    st->linger->data = st;
    uv_async_init(loop, st->async, on_async);
    st->async->data = st;
    rc = uv_thread_create(&st->thread, writer_main, st);
    st->thread_started = rc == 0;
  }
  if (rc == 0) {
    rc = uv_thread_create(&st->ckthread, checkpointer_main, st);
    st->ck_started = rc == 0;
  }
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
  st->seq++;
  st->unsealed++;
  return 0;
}

int hw_store_flush(hw_store_t *st, hw_store_cb cb, void *arg) {
  hw_waiter_t *w = malloc(sizeof *w);
  if (w == NULL)
    return -ENOMEM;
  w->next = NULL;
  w->seq = st->seq;
  w->cb = cb;
  w->arg = arg;
  *st->wtail = w;
  st->wtail = &w->next;
  st->wlast = w->seq;
  uv_mutex_lock(&st->mu);
  if (st->async != NULL)
    uv_async_send(st->async); /* in case everything is already durable */
  uv_mutex_unlock(&st->mu);
  return 0;
}

static void free_ops(hw_op_t *op) {
  while (op != NULL) {
    hw_op_t *next = op->next;
    free(op->buf);
    free(op);
    op = next;
  }
}

/* Writer thread: one SQLite transaction for everything sealed.  A failing
 * op (a constraint, say) is logged and skipped so it cannot sink the
 * others; a failing COMMIT fails the batch. */
static int run_batch(hw_store_t *st, hw_op_t *ops, size_t *nops) {
  hw_op_t *op;
  int rc = 0;

  *nops = 0;
  if (sqlite3_exec(st->wr, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(st->errmsg, sizeof st->errmsg, "begin: %s", sqlite3_errmsg(st->wr));
    return -EIO;
  }
  for (op = ops; op != NULL; op = op->next) {
    sqlite3_stmt *s = st->wstmt[op->id];
    bind_vals(s, op->v, op->n);
    if (sqlite3_step(s) != SQLITE_DONE)
      hw_log("store", "write %s failed: %s", hw_stmts[op->id].name,
             sqlite3_errmsg(st->wr));
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    (*nops)++;
  }
  if (sqlite3_exec(st->wr, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(st->errmsg, sizeof st->errmsg, "commit: %s",
             sqlite3_errmsg(st->wr));
    sqlite3_exec(st->wr, "ROLLBACK", NULL, NULL, NULL);
    rc = -EIO;
  }
  return rc;
}

static void writer_main(void *arg) {
  hw_store_t *st = arg;
  hw_op_t *ops;
  uint64_t last, first;
  size_t n;
  int rc;

  uv_mutex_lock(&st->mu);
  for (;;) {
    while (st->shead == NULL && !st->stop)
      uv_cond_wait(&st->cv, &st->mu);
    if (st->shead == NULL)
      break; /* stopping, and everything is committed */
    ops = st->shead;
    last = st->shead_last;
    first = st->committed;
    st->shead = NULL;
    st->stail = &st->shead;
    uv_mutex_unlock(&st->mu);
    double t0 = getenv("HW_STORE_TRACE") ? uv_hrtime() / 1e6 : 0;
    rc = run_batch(st, ops, &n);
    if (t0 > 0)
      fprintf(stderr, "batch %zu ops %.3f ms (at %.3f)\n", n, uv_hrtime() / 1e6 - t0, t0);
    if (rc < 0)
      hw_log("store", "batch of %zu writes failed: %s", n, st->errmsg);
    free_ops(ops);
    uv_mutex_lock(&st->mu);
    st->committed = last;
    if (rc < 0) {
      st->fail_lo = first;
      st->fail_hi = last;
    }
    if (st->async != NULL)
      uv_async_send(st->async);
  }
  uv_mutex_unlock(&st->mu);
}

static void checkpointer_main(void *arg) {
  hw_store_t *st = arg;
  uv_mutex_lock(&st->mu);
  while (!st->stop) {
    uv_cond_timedwait(&st->ckcv, &st->mu, (uint64_t) 250e6);
    if (st->stop)
      break;
    uv_mutex_unlock(&st->mu);
    sqlite3_wal_checkpoint_v2(st->ck, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                              NULL);
    uv_mutex_lock(&st->mu);
  }
  uv_mutex_unlock(&st->mu);
}

/* Loop thread: tell waiters whose writes the writer has finished. */
static void notify_waiters(hw_store_t *st) {
  uint64_t done, lo, hi;

  uv_mutex_lock(&st->mu);
  done = st->committed;
  lo = st->fail_lo;
  hi = st->fail_hi;
  uv_mutex_unlock(&st->mu);
  while (st->whead != NULL && st->whead->seq <= done) {
    hw_waiter_t *w = st->whead;
    st->whead = w->next;
    if (st->whead == NULL)
      st->wtail = &st->whead;
    w->cb(w->seq > lo && w->seq <= hi ? -EIO : 0, w->arg);
    free(w);
  }
}

static void on_async(uv_async_t *h) {
  hw_store_t *st = h->data;
  if (st != NULL)
    notify_waiters(st);
}

static void async_closed(uv_handle_t *h) { free(h); }

static void seal(hw_store_t *st) {
  uv_mutex_lock(&st->mu);
  *st->stail = st->head;
  st->stail = st->tail;
  st->shead_last = st->seq;
  uv_cond_signal(&st->cv);
  uv_mutex_unlock(&st->mu);
  st->sealed = st->seq;
  st->head = NULL;
  st->tail = &st->head;
  st->unsealed = 0;
}

static void on_linger(uv_timer_t *t) {
  hw_store_t *st = t->data;
  if (st != NULL && st->head != NULL)
    seal(st);
}

void hw_store_seal(hw_store_t *st) {
  if (st->head != NULL)
    seal(st);
}

/* Writes someone waits for (an acknowledgement) are sealed at once.  Writes
 * nobody waits for (a run's outcome, history) linger up to 5 ms so they
 * ride with the next acknowledgement's commit instead of delaying it. */
void hw_store_kick(hw_store_t *st) {
  if (st->head == NULL)
    return;
  /* waiters are in sequence order: the newest tells whether any waits on
   * writes not yet sealed */
  if ((st->whead != NULL && st->wlast > st->sealed) ||
      st->unsealed >= 4096 || st->linger == NULL) {
    seal(st);
    return;
  }
  if (!uv_is_active((uv_handle_t *) st->linger))
    uv_timer_start(st->linger, on_linger, 5, 0);
}

size_t hw_store_pending(const hw_store_t *st) {
  uint64_t done;
  uv_mutex_lock((uv_mutex_t *) &st->mu);
  done = st->committed;
  uv_mutex_unlock((uv_mutex_t *) &st->mu);
  return (size_t) (st->seq - done) + (st->whead != NULL);
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

const char *hw_store_errmsg(hw_store_t *st) { return st->errmsg; }

/* The writer commits everything written so far, then stops; waiters still
 * queued are told here, synchronously.  The engine calls hw_store_detach
 * first when the loop is about to end; otherwise (the test harness swaps
 * stores between cases) the async handle closes on the next loop run. */
int hw_store_close(hw_store_t *st) {
  int i, rc = 0;

  if (st == NULL)
    return 0;
  if (st->head != NULL)
    seal(st);
  if (st->thread_started) {
    uv_mutex_lock(&st->mu);
    st->stop = 1;
    uv_cond_signal(&st->cv);
    uv_cond_signal(&st->ckcv);
    uv_mutex_unlock(&st->mu);
    uv_thread_join(&st->thread);
  }
  if (st->ck_started)
    uv_thread_join(&st->ckthread);
  notify_waiters(st);
  hw_store_detach(st);
  for (i = 0; i < HW_NSTMTS; i++) {
    sqlite3_finalize(st->wstmt[i]);
    sqlite3_finalize(st->rstmt[i]);
  }
  if (st->rd != NULL && sqlite3_close(st->rd) != SQLITE_OK)
    rc = -EBUSY;
  if (st->wr != NULL && sqlite3_close(st->wr) != SQLITE_OK)
    rc = -EBUSY;
  if (st->ck != NULL && sqlite3_close(st->ck) != SQLITE_OK)
    rc = -EBUSY;
  uv_cond_destroy(&st->cv);
  uv_cond_destroy(&st->ckcv);
  uv_mutex_destroy(&st->mu);
  free(st);
  return rc;
}

/* Closes the async handle while the loop still runs (engine stop), so the
 * loop can end; later commits are reported by hw_store_close. */
static void timer_closed(uv_handle_t *h) { free(h); }

void hw_store_detach(hw_store_t *st) {
  uv_async_t *a;
  if (st->head != NULL)
    seal(st);
  if (st->linger != NULL) {
    st->linger->data = NULL;
    uv_close((uv_handle_t *) st->linger, timer_closed); /* frees it */
    st->linger = NULL;
  }
  uv_mutex_lock(&st->mu); /* the writer sends on it */
  a = st->async;
  st->async = NULL;
  uv_mutex_unlock(&st->mu);
  if (a != NULL)
    uv_close((uv_handle_t *) a, async_closed); /* frees a */
}
