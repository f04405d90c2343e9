/* store: SQLite in WAL mode, with group commit on a writer thread.
 *
 * Writes are copied into hw_op_t records.  During one loop iteration they
 * collect on the loop thread; hw_store_kick (once per iteration) seals them
 * and hands them to the writer thread, which commits everything handed over
 * since its last commit in one SQLite transaction and one fsync, back to
 * back with the loop's own work (so the loop never waits for a disk and the
 * disk never waits for the loop).  Every op has a sequence number.
 *
 * A batch is all or nothing: any failing statement or a failing COMMIT
 * rolls the whole batch back.  The writer then drops the batch's request
 * writes (recording the batch's range as failed, so exactly their waiters
 * are told), keeps the other writes, in order, at the head of the next
 * batch, and retries after a pause (100 ms doubling to 1 s) while the
 * failure is the disk's (I/O error, disk full, busy).  A statement that
 * fails on its own data (a constraint, say) can never succeed: it is logged
 * and dropped, and the rest is retried at once.  After a failure the next
 * batch first rewrites a probe row, so the frames the failed commit left in
 * the WAL are overwritten by a good commit (SQLite could otherwise read them
 * back as committed when it recovers the WAL after a crash).
 *
 * Waiters: an awaiter waits for one request's write (told when the writer
 * has decided it), a flusher for everything so far to be durable.  The
 * writer reports through a uv_async; the loop thread tells them.  Reads use
 * a second connection on the loop thread.  Whole iterations are sealed
 * together, so the writes one run makes at one point commit together.
 */
#include "store_int.h"
#include "store_sql.h"
#include "store_pg.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

_Static_assert(HW_NSTMTS <= HW_STORE_MAXSTMTS, "raise HW_STORE_MAXSTMTS");

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

/* Every statement is prepared once; its declared value count must be what
 * SQLite counts in its text, so a statement and its callers cannot drift
 * apart silently. */
static int prepare_all(hw_store_t *st, char *err, size_t len) {
  int i, have;
  for (i = 0; i < HW_NSTMTS; i++) {
    sqlite3 *db = hw_stmts[i].write ? st->wr : st->rd;
    sqlite3_stmt **slot = hw_stmts[i].write ? &st->wstmt[i] : &st->rstmt[i];
    if (hw_stmts[i].sql == NULL) /* PostgreSQL only (store_sql.h) */
      continue;
    if (sqlite3_prepare_v3(db, hw_stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT,
                           slot, NULL) != SQLITE_OK) {
      snprintf(err, len, "statement %s: %s", hw_stmts[i].name,
               sqlite3_errmsg(db));
      return -EIO;
    }
    have = sqlite3_bind_parameter_count(*slot);
    if (have != hw_stmts[i].nparams || have > HW_OP_MAXV) {
      snprintf(err, len, "statement %s declares %d values but its SQL binds "
               "%d (at most %d)", hw_stmts[i].name, hw_stmts[i].nparams, have,
               HW_OP_MAXV);
      return -EINVAL;
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

/* One engine per store: an flock on DIR/lock, held until close (the OS
 * drops it when the process dies, kill -9 included).  The holder's pid is
 * the file's content.  A second engine writes nothing: the file already
 * exists, and it reads the pid only. */
static int lock_dir(const char *dir, int *fd_out, char *err, size_t len) {
  char path[4096], buf[32];
  ssize_t n = 0;
  long pid = 0;
  int fd, tries;

  snprintf(path, sizeof path, "%s/lock", dir);
  fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, len, "%s: %s", path, strerror(errno));
    return -errno;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e != EWOULDBLOCK) {
      snprintf(err, len, "%s: %s", path, strerror(e));
      close(fd);
      return -e;
    }
    /* the holder writes its pid right after locking: give it a moment */
    for (tries = 0; tries < 50 && pid <= 0; tries++) {
      n = pread(fd, buf, sizeof buf - 1, 0);
      buf[n > 0 ? n : 0] = '\0';
      pid = atol(buf);
      if (pid <= 0)
        usleep(2000);
    }
    snprintf(err, len, "%s is in use by another engine (pid %ld)", dir, pid);
    close(fd);
    return -EBUSY;
  }
  n = snprintf(buf, sizeof buf, "%ld\n", (long) getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t) n, 0) != n) {
    snprintf(err, len, "%s: %s", path, strerror(errno));
    close(fd);
    return -EIO;
  }
  *fd_out = fd;
  return 0;
}

static void timer_closed(uv_handle_t *h) { free(h); }
static void async_closed(uv_handle_t *h) { free(h); }

static int seed_row(int ncols, const hw_val_t *cols, const char *const *names,
                    void *arg) {
  hw_store_t *st = arg;
  int i;
  (void) names;
  for (i = 0; i < ncols && i < HW_ID_KINDS; i++)
    st->ids[i] = cols[i].type == HW_V_INT ? cols[i].i : 0;
  return 0;
}

/* The counters go on from the largest ids stored (max_ids lists them in
 * HW_ID_* order). */
static int seed_ids(hw_store_t *st, char *err, size_t len) {
  int id = hw_store_stmt_id("max_ids");
  if (id < 0 || hw_store_query(st, id, NULL, 0, seed_row, st) != 0) {
    snprintf(err, len, "reading the largest ids: %s", st->errmsg);
    return -EIO;
  }
  return 0;
}

int hw_store_next_id(hw_store_t *st, int kind, int64_t *id) {
  if (st->pg)
    return hw_pg__next_id(st, kind, id);
  if (kind < 0 || kind >= HW_ID_KINDS)
    return -EINVAL;
  *id = ++st->ids[kind];
  return 0;
}

int64_t hw_store_last_id(const hw_store_t *st, int kind) {
  return kind >= 0 && kind < HW_ID_KINDS ? st->ids[kind] : 0;
}

/* HOOKWORK_WAL_LIMIT_MB: how long the WAL may grow before the writer
 * helps the checkpointer start it over (see store_int.h). */
static int wal_limit(hw_store_t *st, char *err, size_t len) {
  const char *env = getenv("HOOKWORK_WAL_LIMIT_MB");
  long mb = HW_WAL_LIMIT_MB;
  char *end;
  if (env != NULL) {
    mb = strtol(env, &end, 10);
    if (*env == '\0' || *end != '\0' || mb < 1 || mb > 4096) {
      snprintf(err, len, "HOOKWORK_WAL_LIMIT_MB must be a whole number of "
               "megabytes from 1 to 4096, not '%.40s'", env);
      return -EINVAL;
    }
  }
  st->wal_limit = (int) (mb * 256); /* 4 KB pages */
  st->wal_step = st->wal_limit / 4 < HW_WAL_STEP ? st->wal_limit / 4
                                                 : HW_WAL_STEP;
  return 0;
}

/* dir: the SQLite data directory, or NULL with url (PostgreSQL) */
static int store_open(uv_loop_t *loop, const char *dir, const char *url,
                      const char *node, hw_store_t **out, char *err,
                      size_t errlen) {
  char path[4096];
  const char *env;
  hw_store_t *st;
  int rc;

  st = calloc(1, sizeof *st);
  if (st == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  st->loop = loop;
  st->lockfd = -1;
  st->tail = &st->head;
  st->atail = &st->ahead;
  st->ftail = &st->fhead;
  st->stail = &st->shead;
  st->newfails_tail = &st->newfails;
  st->max_pending = HW_MAX_PENDING_DEFAULT;
  if ((env = getenv("HOOKWORK_MAX_PENDING")) != NULL && atol(env) > 0)
    st->max_pending = (size_t) atol(env);
  st->trace = (env = getenv("HOOKWORK_STORE_TRACE")) != NULL && atoi(env) > 0;
  if (uv_mutex_init(&st->mu) != 0) {
    free(st);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  if (uv_cond_init(&st->cv) != 0 || uv_cond_init(&st->donecv) != 0 ||
      uv_cond_init(&st->ckcv) != 0) {
    /* a condition that failed to initialise holds nothing to destroy */
    uv_mutex_destroy(&st->mu);
    free(st);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  if (url != NULL) { /* PostgreSQL: no directory, file or thread */
    rc = hw_pg__open(st, url, node, err, errlen);
    if (rc == 0) /* recovery runs the rows stored before this start */
      rc = seed_ids(st, err, errlen);
    goto handles;
  }
  rc = wal_limit(st, err, errlen);
  if (rc == 0)
    rc = lock_dir(dir, &st->lockfd, err, errlen);
  snprintf(path, sizeof path, "%s/hookwork.db", dir);
  if (rc == 0)
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
  if (rc == 0)
    rc = seed_ids(st, err, errlen);
  /* each handle is initialised as soon as it is allocated, so the error
   * path closes only what exists */
handles:
  if (rc == 0) {
    if ((st->linger = malloc(sizeof *st->linger)) == NULL) {
      rc = -ENOMEM;
    } else {
      uv_timer_init(loop, st->linger);
      st->linger->data = st;
    }
  }
  if (rc == 0) {
    uv_async_t *a = malloc(sizeof *a);
    if (a == NULL) {
      rc = -ENOMEM;
    } else if ((rc = uv_async_init(loop, a, on_async)) != 0) {
      free(a);
    } else {
      a->data = st;
      st->async = a;
    }
  }
  if (rc == 0 && url == NULL) {
    rc = uv_thread_create(&st->thread, hw_store__writer_main, st);
    st->thread_started = rc == 0;
  }
  if (rc == 0 && url == NULL) {
    rc = uv_thread_create(&st->ckthread, hw_store__checkpointer_main, st);
    st->ck_started = rc == 0;
  }
  if (rc != 0) {
    if (rc == -ENOMEM)
      snprintf(err, errlen, "out of memory");
    hw_store_close(st);
    return rc;
  }
  *out = st;
  return 0;
}

int hw_store_open(uv_loop_t *loop, const char *dir, hw_store_t **out,
                  char *err, size_t errlen) {
  return store_open(loop, dir, NULL, NULL, out, err, errlen);
}

int hw_store_open_pg(uv_loop_t *loop, const char *url, const char *node,
                     hw_store_t **out, char *err, size_t errlen) {
  return store_open(loop, NULL, url, node, out, err, errlen);
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

const char *hw_store__stmt_name(int id) {
  return id >= 0 && id < HW_NSTMTS ? hw_stmts[id].name : "?";
}

int hw_store_stmt_nparams(int id) {
  return id >= 0 && id < HW_NSTMTS ? hw_stmts[id].nparams : -1;
}

int hw_store__bind(sqlite3_stmt *s, const hw_val_t *v, int n) {
  int i, rc = SQLITE_OK;
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  for (i = 0; i < n && rc == SQLITE_OK; i++) {
    switch (v[i].type) {
    case HW_V_INT: rc = sqlite3_bind_int64(s, i + 1, v[i].i); break;
    case HW_V_REAL: rc = sqlite3_bind_double(s, i + 1, v[i].d); break;
    case HW_V_TEXT:
      rc = sqlite3_bind_text64(s, i + 1, v[i].s, (sqlite3_uint64) v[i].n,
                               SQLITE_STATIC, SQLITE_UTF8);
      break;
    default: rc = sqlite3_bind_null(s, i + 1); break;
    }
  }
  return rc;
}

static int queue_write(hw_store_t *st, int id, const hw_val_t *vals, int n,
                       int req) {
  hw_op_t *op;
  size_t total = 0, off = 0;
  int i;

  if (!hw_store_stmt_is_write(id) || n != hw_stmts[id].nparams)
    return -EINVAL;
  if (st->pg == NULL && hw_stmts[id].sql == NULL)
    return -ENOTSUP; /* PostgreSQL only */
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
  op->req = req;
  for (i = 0; i < n; i++) {
    op->v[i] = vals[i];
    if (vals[i].type == HW_V_TEXT) {
      memcpy(op->buf + off, vals[i].s, vals[i].n);
      op->buf[off + vals[i].n] = '\0';
      op->v[i].s = op->buf + off;
      off += vals[i].n + 1;
    }
  }
  op->seq = ++st->seq;
  *st->tail = op;
  st->tail = &op->next;
  st->unsealed++;
  return 0;
}

int hw_store_write(hw_store_t *st, int id, const hw_val_t *vals, int n) {
  return queue_write(st, id, vals, n, 0);
}

int hw_store_write_req(hw_store_t *st, int id, const hw_val_t *vals, int n,
                       uint64_t *seq) {
  int rc = queue_write(st, id, vals, n, 1);
  if (rc == 0)
    *seq = st->seq;
  return rc;
}

static int add_waiter(hw_store_t *st, hw_waiter_t ***tail, uint64_t *last,
                      uint64_t seq, uint64_t thr, hw_store_cb cb, void *arg) {
  hw_waiter_t *w = malloc(sizeof *w);
  if (w == NULL)
    return -ENOMEM;
  w->next = NULL;
  w->seq = seq;
  w->thr = thr > *last ? thr : *last; /* kept in order; later is harmless */
  w->cb = cb;
  w->arg = arg;
  **tail = w;
  *tail = &w->next;
  *last = w->thr;
  uv_mutex_lock(&st->mu);
  if (st->async != NULL)
    uv_async_send(st->async); /* in case it is decided already */
  uv_mutex_unlock(&st->mu);
  return 0;
}

int hw_store_await(hw_store_t *st, uint64_t seq, hw_store_cb cb, void *arg) {
  if (seq == 0 || seq > st->seq)
    return -EINVAL;
  return add_waiter(st, &st->atail, &st->alast, seq, seq, cb, arg);
}

int hw_store_flush(hw_store_t *st, hw_store_cb cb, void *arg) {
  return add_waiter(st, &st->ftail, &st->flast, st->seq, st->seq, cb, arg);
}


static const hw_fail_t *failed(const hw_store_t *st, uint64_t seq) {
  const hw_fail_t *f;
  for (f = st->fails; f != NULL; f = f->next)
    if (seq > f->lo && seq <= f->hi)
      return f;
  return NULL;
}

/* Failed ranges are kept while an awaiter may still ask about them (and at
 * least a minute: a run asks right after its request was written). */
static void prune_fails(hw_store_t *st) {
  uint64_t now = uv_hrtime(), min = UINT64_MAX;
  hw_fail_t **p = &st->fails, *f;
  hw_waiter_t *w;
  if (st->fails == NULL)
    return;
  for (w = st->ahead; w != NULL; w = w->next)
    if (w->seq < min)
      min = w->seq;
  while ((f = *p) != NULL) {
    if (now - f->at > HW_FAIL_KEEP_NS && f->hi < min) {
      *p = f->next;
      free(f);
    } else {
      p = &f->next;
    }
  }
}

/* Loop thread: tell the waiters whose writes the writer has decided.
 * final: the writer is gone; flushes never committed are told -EIO. */
static void notify_waiters(hw_store_t *st, int final) {
  uint64_t done, durable, now = uv_hrtime();
  hw_fail_t *nf, **ft;
  char reason[200];

  uv_mutex_lock(&st->mu);
  done = st->done;
  durable = st->durable;
  nf = st->newfails;
  st->newfails = NULL;
  st->newfails_tail = &st->newfails;
  snprintf(reason, sizeof reason, "%s", st->failing ? st->reason : "");
  uv_mutex_unlock(&st->mu);
  for (ft = &st->fails; *ft != NULL; ft = &(*ft)->next)
    ;
  *ft = nf;
  for (; nf != NULL; nf = nf->next)
    nf->at = now;
  while (st->ahead != NULL && st->ahead->thr <= done) {
    hw_waiter_t *w = st->ahead;
    const hw_fail_t *f = failed(st, w->seq);
    st->ahead = w->next;
    if (st->ahead == NULL)
      st->atail = &st->ahead;
    w->cb(f ? -EIO : 0, f ? f->msg : NULL, w->arg);
    free(w);
  }
  while (st->fhead != NULL && (st->fhead->thr <= durable || final)) {
    hw_waiter_t *w = st->fhead;
    int ok = w->thr <= durable;
    st->fhead = w->next;
    if (st->fhead == NULL)
      st->ftail = &st->fhead;
    w->cb(ok ? 0 : -EIO, ok ? NULL : reason[0] ? reason : "not stored",
          w->arg);
    free(w);
  }
  prune_fails(st);
}

void hw_store__notify(hw_store_t *st, int final) { notify_waiters(st, final); }

static void on_async(uv_async_t *h) {
  hw_store_t *st = h->data;
  if (st != NULL)
    notify_waiters(st, 0);
}

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
  if (st->pg)
    hw_pg__sealed(st);
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

void hw_store_turn(hw_store_t *st) {
  if (st != NULL && st->pg != NULL)
    hw_pg__turn(st);
}

/* Writes someone waits for (an acknowledgement) are sealed at once.  Writes
 * nobody waits for (a run's outcome, history) linger up to 5 ms so they
 * ride with the next acknowledgement's commit instead of delaying it. */
void hw_store_kick(hw_store_t *st) {
  if (st->head == NULL)
    return;
  /* waiters are in order: the newest tells whether any waits on writes not
   * yet sealed */
  if ((st->ahead != NULL && st->alast > st->sealed) ||
      (st->fhead != NULL && st->flast > st->sealed) ||
      st->unsealed >= 4096 || st->linger == NULL) {
    seal(st);
    return;
  }
  if (!uv_is_active((uv_handle_t *) st->linger))
    uv_timer_start(st->linger, on_linger, 5, 0);
}

int hw_store_settle(hw_store_t *st, unsigned timeout_ms) {
  uint64_t until = uv_hrtime() + (uint64_t) timeout_ms * 1000000, now;
  int rc = 0;
  if (st->head != NULL)
    seal(st);
  if (st->pg)
    return hw_pg__settle(st, timeout_ms);
  uv_mutex_lock(&st->mu);
  while (st->done < st->seq && st->thread_started) {
    now = uv_hrtime();
    if (now >= until) {
      rc = -ETIMEDOUT;
      break;
    }
    uv_cond_timedwait(&st->donecv, &st->mu, until - now);
  }
  uv_mutex_unlock(&st->mu);
  notify_waiters(st, 0);
  return rc;
}

size_t hw_store_pending(const hw_store_t *st) {
  uint64_t done;
  size_t carried;
  uv_mutex_lock((uv_mutex_t *) &st->mu);
  done = st->done;
  carried = st->ncarry;
  uv_mutex_unlock((uv_mutex_t *) &st->mu);
  return (size_t) (st->seq - done) + carried +
         (st->ahead != NULL || st->fhead != NULL);
}

int hw_store_refusal(const hw_store_t *st, char *reason, size_t len) {
  uint64_t done;
  size_t carried;
  int failing;
  uv_mutex_lock((uv_mutex_t *) &st->mu);
  done = st->done;
  carried = st->ncarry;
  failing = st->failing;
  if (failing)
    snprintf(reason, len, "%s", st->reason);
  uv_mutex_unlock((uv_mutex_t *) &st->mu);
  if (failing)
    return 1;
  if ((size_t) (st->seq - done) + carried >= st->max_pending) {
    snprintf(reason, len, "too many writes waiting to be committed (%zu)",
             st->max_pending);
    return 1;
  }
  return 0;
}

void hw_store_progress(const hw_store_t *st, uint64_t *written,
                       uint64_t *done) {
  uv_mutex_lock((uv_mutex_t *) &st->mu);
  *done = st->durable;
  uv_mutex_unlock((uv_mutex_t *) &st->mu);
  *written = st->seq;
}

int hw_store_query(hw_store_t *st, int id, const hw_val_t *vals, int n,
                   hw_store_row_cb cb, void *arg) {
  sqlite3_stmt *s;
  hw_val_t cols[32];
  const char *names[32];
  int rc, nc, i;

  if (st->pg)
    return hw_pg__query(st, id, vals, n, cb, arg);
  if (id < 0 || id >= HW_NSTMTS || hw_stmts[id].write) {
    snprintf(st->errmsg, sizeof st->errmsg, "no query statement %d", id);
    return -EINVAL;
  }
  if (n != hw_stmts[id].nparams) {
    snprintf(st->errmsg, sizeof st->errmsg, "%s takes %d values, got %d",
             hw_stmts[id].name, hw_stmts[id].nparams, n);
    return -EINVAL;
  }
  s = st->rstmt[id];
  if (s == NULL) {
    snprintf(st->errmsg, sizeof st->errmsg, "%s: PostgreSQL only",
             hw_stmts[id].name);
    return -ENOTSUP;
  }
  if (hw_store__bind(s, vals, n) != SQLITE_OK) {
    snprintf(st->errmsg, sizeof st->errmsg, "%s: %s", hw_stmts[id].name,
             sqlite3_errmsg(st->rd));
    return -EINVAL;
  }
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

/* The writer commits everything written so far (one attempt), then stops;
 * waiters still queued are told here, synchronously.  The engine calls
 * hw_store_detach first when the loop is about to end; otherwise (the test
 * harness swaps stores between cases) the handles close on the next loop
 * run.  Safe on a half-opened store (hw_store_open's error path). */
int hw_store_close(hw_store_t *st) {
  int i, rc = 0;
  hw_fail_t *f;

  if (st == NULL)
    return 0;
  if (st->head != NULL)
    seal(st);
  if (st->pg)
    hw_pg__close(st); /* commits what is left, frees the backend */
  if (st->thread_started || st->ck_started) {
    uv_mutex_lock(&st->mu);
    st->stop = 1;
    uv_cond_signal(&st->cv);
    uv_cond_signal(&st->ckcv);
    uv_mutex_unlock(&st->mu);
  }
  if (st->thread_started)
    uv_thread_join(&st->thread);
  if (st->ck_started)
    uv_thread_join(&st->ckthread);
  notify_waiters(st, 1);
  hw_store_detach(st);
  while ((f = st->fails) != NULL) {
    st->fails = f->next;
    free(f);
  }
  hw_store__free_ops(st->shead);
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
  if (st->lockfd >= 0)
    close(st->lockfd); /* releases the lock */
  uv_cond_destroy(&st->cv);
  uv_cond_destroy(&st->donecv);
  uv_cond_destroy(&st->ckcv);
  uv_mutex_destroy(&st->mu);
  free(st);
  return rc;
}

/* Closes the loop handles while the loop still runs (engine stop), so the
 * loop can end; later commits are reported by hw_store_close. */
void hw_store_detach(hw_store_t *st) {
  uv_async_t *a;
  if (st->head != NULL)
    seal(st);
  if (st->pg)
    hw_pg__detach(st);
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
