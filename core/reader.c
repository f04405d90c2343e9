/* reader: a thread and a read-only connection for admin reads, so listing
 * and counting over millions of rows never runs on the loop thread.
 * Queries queue under a mutex; the thread prepares (with a small cache by
 * SQL text), steps and copies the rows, then hands them back through a
 * uv_async handle.  WAL mode lets this connection read while the writer
 * commits.  On a PostgreSQL store (dir is a postgres:// URL) the same
 * thread runs the queries on its own libpq connection (reader_pg.c). */
#include "reader.h"
#include "reader_pg.h"
#include "store_pg.h"

#include <errno.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HW_READER_CACHE 24

typedef struct hw_rq_s {
  struct hw_rq_s *next;
  char *sql;
  hw_val_t vals[16];
  int n;
  char *buf; /* the text values' bytes */
  hw_reader_cb cb;
  void *arg;
  int status;
  hw_reader_res_t res;
} hw_rq_t;

struct hw_reader_s {
  sqlite3 *db;
  char *pg_url; /* a PostgreSQL store: connected on the thread */
  hw_reader_pg_t *pg;
  struct {
    char *sql;
    sqlite3_stmt *st;
    unsigned long used;
  } cache[HW_READER_CACHE];
  unsigned long clock;
  uv_mutex_t mu;
  uv_cond_t cv;
  hw_rq_t *todo, **todo_tail, *done, **done_tail;
  uv_async_t *async;
  uv_thread_t thread;
  int started, stop;
};

static void res_free(hw_reader_res_t *res) {
  int i;
  for (i = 0; i < res->ncols; i++)
    free(res->names[i]);
  free(res->names);
  for (i = 0; i < res->ncols * res->nrows; i++)
    if (res->vals[i].type == HW_V_TEXT)
      free((char *) res->vals[i].s);
  free(res->vals);
}

static void rq_free(hw_rq_t *q) {
  res_free(&q->res);
  free(q->sql);
  free(q->buf);
  free(q);
}

static sqlite3_stmt *prepare(hw_reader_t *rd, const char *sql) {
  int i, oldest = 0;
  sqlite3_stmt *st;
  for (i = 0; i < HW_READER_CACHE; i++) {
    if (rd->cache[i].sql != NULL && strcmp(rd->cache[i].sql, sql) == 0) {
      rd->cache[i].used = ++rd->clock;
      return rd->cache[i].st;
    }
    if (rd->cache[i].used < rd->cache[oldest].used)
      oldest = i;
  }
  if (sqlite3_prepare_v3(rd->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                         NULL) != SQLITE_OK)
    return NULL;
  char *copy = strdup(sql);
  if (copy == NULL) {
    sqlite3_finalize(st);
    return NULL;
  }
  sqlite3_finalize(rd->cache[oldest].st);
  free(rd->cache[oldest].sql);
  rd->cache[oldest].sql = copy;
  rd->cache[oldest].st = st;
  rd->cache[oldest].used = ++rd->clock;
  return st;
}

static int copy_row(hw_rq_t *q, sqlite3_stmt *st, int *cap) {
  hw_reader_res_t *res = &q->res;
  int i, base;
  if (res->nrows >= HW_READER_MAXROWS)
    return -E2BIG;
  if ((res->nrows + 1) * res->ncols > *cap) {
    int ncap = *cap ? *cap * 2 : res->ncols * 16;
    hw_val_t *v = realloc(res->vals, (size_t) ncap * sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    res->vals = v;
    *cap = ncap;
  }
  base = res->nrows * res->ncols;
  for (i = 0; i < res->ncols; i++) {
    hw_val_t *v = &res->vals[base + i];
    memset(v, 0, sizeof *v);
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER:
      v->type = HW_V_INT;
      v->i = sqlite3_column_int64(st, i);
      break;
    case SQLITE_FLOAT:
      v->type = HW_V_REAL;
      v->d = sqlite3_column_double(st, i);
      break;
    case SQLITE_NULL: v->type = HW_V_NULL; break;
    default: {
      const void *p = sqlite3_column_blob(st, i);
      size_t n = (size_t) sqlite3_column_bytes(st, i);
      char *s = malloc(n + 1);
      if (s == NULL) {
        res->nrows++; /* so res_free sees the columns filled so far */
        for (; i < res->ncols; i++)
          res->vals[base + i].type = HW_V_NULL;
        return -ENOMEM;
      }
      if (n)
        memcpy(s, p, n);
      s[n] = '\0';
      v->type = HW_V_TEXT;
      v->s = s;
      v->n = n;
    }
    }
  }
  res->nrows++;
  return 0;
}

static void run_query_pg(hw_reader_t *rd, hw_rq_t *q) {
  /* connected here, not in hw_reader_open: that runs on the loop */
  if (rd->pg == NULL &&
      (q->status = hw_reader_pg_open(rd->pg_url, &rd->pg, q->res.errmsg,
                                     sizeof q->res.errmsg)) != 0)
    return;
  q->status = hw_reader_pg_run(rd->pg, q->sql, q->vals, q->n,
                               HW_READER_MAXROWS, &q->res);
}

static void run_query(hw_reader_t *rd, hw_rq_t *q) {
  sqlite3_stmt *st;
  int i, rc = SQLITE_DONE, cap = 0;
  if (rd->pg_url != NULL) {
    run_query_pg(rd, q);
    return;
  }
  st = prepare(rd, q->sql);
  if (st == NULL) {
    snprintf(q->res.errmsg, sizeof q->res.errmsg, "%s", sqlite3_errmsg(rd->db));
    q->status = -EINVAL;
    return;
  }
  for (i = 0; i < q->n; i++) {
    const hw_val_t *v = &q->vals[i];
    switch (v->type) {
    case HW_V_INT: sqlite3_bind_int64(st, i + 1, v->i); break;
    case HW_V_REAL: sqlite3_bind_double(st, i + 1, v->d); break;
    case HW_V_TEXT: sqlite3_bind_text(st, i + 1, v->s, (int) v->n, SQLITE_STATIC); break;
    default: sqlite3_bind_null(st, i + 1);
    }
  }
  q->res.ncols = sqlite3_column_count(st);
  q->res.names = calloc((size_t) q->res.ncols + 1, sizeof *q->res.names);
  if (q->res.names == NULL) {
    q->res.ncols = 0;
    q->status = -ENOMEM;
  }
  for (i = 0; q->status == 0 && i < q->res.ncols; i++)
    if ((q->res.names[i] = strdup(sqlite3_column_name(st, i))) == NULL)
      q->status = -ENOMEM;
  while (q->status == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
    q->status = copy_row(q, st, &cap);
  if (q->status == 0 && rc != SQLITE_DONE) {
    snprintf(q->res.errmsg, sizeof q->res.errmsg, "%s", sqlite3_errmsg(rd->db));
    q->status = -EIO;
  } else if (q->status != 0) {
    snprintf(q->res.errmsg, sizeof q->res.errmsg, "%s",
             q->status == -E2BIG ? "too many rows" : "out of memory");
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static void reader_main(void *arg) {
  hw_reader_t *rd = arg;
  /* a long scan must not take CPU from the loop (webhooks) on a small
   * machine: this thread runs at a lower priority (Linux: per thread) */
  (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), 10);
  uv_mutex_lock(&rd->mu);
  for (;;) {
    while (rd->todo == NULL && !rd->stop)
      uv_cond_wait(&rd->cv, &rd->mu);
    if (rd->stop)
      break;
    hw_rq_t *q = rd->todo;
    rd->todo = q->next;
    if (rd->todo == NULL)
      rd->todo_tail = &rd->todo;
    uv_mutex_unlock(&rd->mu);
    run_query(rd, q);
    uv_mutex_lock(&rd->mu);
    q->next = NULL;
    *rd->done_tail = q;
    rd->done_tail = &q->next;
    if (rd->async != NULL)
      uv_async_send(rd->async);
  }
  uv_mutex_unlock(&rd->mu);
}

static void on_async(uv_async_t *h) {
  hw_reader_t *rd = h->data;
  hw_rq_t *list, *q;
  uv_mutex_lock(&rd->mu);
  list = rd->done;
  rd->done = NULL;
  rd->done_tail = &rd->done;
  uv_mutex_unlock(&rd->mu);
  while ((q = list) != NULL) {
    list = q->next;
    q->cb(q->status, &q->res, q->arg);
    rq_free(q);
  }
}

static int open_sqlite(hw_reader_t *rd, const char *dir, char *err,
                                 size_t errlen) {
  char path[4096];
  snprintf(path, sizeof path, "%s/hookwork.db", dir);
  if (sqlite3_open_v2(path, &rd->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK) {
    snprintf(err, errlen, "%s: %s", path, rd->db ? sqlite3_errmsg(rd->db) : "no memory");
    sqlite3_close(rd->db);
    rd->db = NULL;
    return -EIO;
  }
  sqlite3_busy_timeout(rd->db, 10000);
  sqlite3_exec(rd->db, "PRAGMA query_only=1; PRAGMA cache_size=-16000;", NULL,
               NULL, NULL);
  return 0;
}

int hw_reader_open(uv_loop_t *loop, const char *dir, hw_reader_t **out,
                   char *err, size_t errlen) {
  hw_reader_t *rd = calloc(1, sizeof *rd);
  if (rd == NULL)
    return -ENOMEM;
  rd->todo_tail = &rd->todo;
  rd->done_tail = &rd->done;
  if (hw_pg_is_url(dir)) {
    if ((rd->pg_url = strdup(dir)) == NULL) {
      free(rd);
      return -ENOMEM;
    }
  } else if (open_sqlite(rd, dir, err, errlen) != 0) {
    free(rd);
    return -EIO;
  }
  rd->async = malloc(sizeof *rd->async);
  if (rd->async == NULL || uv_mutex_init(&rd->mu) != 0) {
    free(rd->async);
    sqlite3_close(rd->db);
    free(rd->pg_url);
    free(rd);
    return -ENOMEM;
  }
  uv_cond_init(&rd->cv);
  uv_async_init(loop, rd->async, on_async);
  rd->async->data = rd;
  uv_unref((uv_handle_t *) rd->async); /* idle, it must not keep the loop up */
  if (uv_thread_create(&rd->thread, reader_main, rd) != 0) {
    snprintf(err, errlen, "cannot start the reader thread");
    hw_reader_close(rd);
    return -ENOMEM;
  }
  rd->started = 1;
  *out = rd;
  return 0;
}

void *hw_reader_query(hw_reader_t *rd, const char *sql, const hw_val_t *vals,
                      int n, hw_reader_cb cb, void *arg) {
  hw_rq_t *q;
  size_t total = 0, off = 0;
  int i;
  if (n > 16)
    return NULL;
  if ((q = calloc(1, sizeof *q)) == NULL || (q->sql = strdup(sql)) == NULL) {
    free(q);
    return NULL;
  }
  for (i = 0; i < n; i++)
    if (vals[i].type == HW_V_TEXT)
      total += vals[i].n + 1;
  if (total && (q->buf = malloc(total)) == NULL) {
    free(q->sql);
    free(q);
    return NULL;
  }
  for (i = 0; i < n; i++) {
    q->vals[i] = vals[i];
    if (vals[i].type == HW_V_TEXT) {
      memcpy(q->buf + off, vals[i].s, vals[i].n);
      q->buf[off + vals[i].n] = '\0';
      q->vals[i].s = q->buf + off;
      off += vals[i].n + 1;
    }
  }
  q->n = n;
  q->cb = cb;
  q->arg = arg;
  uv_mutex_lock(&rd->mu);
  *rd->todo_tail = q;
  rd->todo_tail = &q->next;
  uv_cond_signal(&rd->cv);
  uv_mutex_unlock(&rd->mu);
  return q;
}

static void async_closed(uv_handle_t *h) { free(h); }

void hw_reader_detach(hw_reader_t *rd) {
  uv_async_t *a;
  if (rd == NULL)
    return;
  uv_mutex_lock(&rd->mu);
  a = rd->async;
  rd->async = NULL;
  uv_mutex_unlock(&rd->mu);
  if (a != NULL)
    uv_close((uv_handle_t *) a, async_closed);
}

static void free_list(hw_rq_t *q) {
  while (q != NULL) {
    hw_rq_t *next = q->next;
    rq_free(q);
    q = next;
  }
}

void hw_reader_close(hw_reader_t *rd) {
  int i;
  if (rd == NULL)
    return;
  if (rd->started) {
    uv_mutex_lock(&rd->mu);
    rd->stop = 1;
    uv_cond_signal(&rd->cv);
    uv_mutex_unlock(&rd->mu);
    uv_thread_join(&rd->thread);
  }
  hw_reader_detach(rd);
  free_list(rd->todo);
  free_list(rd->done);
  for (i = 0; i < HW_READER_CACHE; i++) {
    sqlite3_finalize(rd->cache[i].st);
    free(rd->cache[i].sql);
  }
  sqlite3_close(rd->db);
  hw_reader_pg_close(rd->pg);
  free(rd->pg_url);
  uv_cond_destroy(&rd->cv);
  uv_mutex_destroy(&rd->mu);
  free(rd);
}
