/* store_pg: the PostgreSQL backend (see store_pg.h for the design).
 *
 * The batch machine runs on the loop thread and shares store.c's queue:
 * ops sealed by store.c wait in st->shead; a batch takes them (with the
 * writes kept from a failed batch first), sends them in one pipeline and
 * decides them when the Sync's result arrives, updating st->done,
 * st->durable, st->failing and the failed ranges under st->mu exactly as
 * the SQLite writer thread does, then wakes store.c's async so the waiters
 * are told.  States of the writes connection:
 *   DOWN        no connection; (re)connect when the retry pause is over
 *   CONNECTING  PQconnectPoll driven by uv_poll
 *   IDLE        connected, no batch in flight
 *   BUSY        a batch in flight (results read as the socket is readable)
 * While the store fails (connection lost, commit failed) new request
 * writes are refused at once: their waiters hear of it without waiting
 * for the next attempt. */
#include "store_pg_int.h"
#include "store_sql_pg.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void pump(hw_store_t *st);
static void start_connect(hw_store_t *st);
static int drain_idle(hw_store_t *st);
static void on_timer(uv_timer_t *t);
static void on_poll(uv_poll_t *h, int status, int events);

/* ---- the writes connection --------------------------------------------- */

static void poll_closed(uv_handle_t *h) { free(h); }
static void timer_closed(uv_handle_t *h) { free(h); }

static void unwatch(hw_pg_t *pg) {
  if (pg->poll != NULL) {
    pg->poll->data = NULL;
    uv_close((uv_handle_t *) pg->poll, poll_closed);
    pg->poll = NULL;
  }
  pg->pollfd = -1;
}

static void watch(hw_store_t *st, int events) {
  hw_pg_t *pg = st->pg;
  int fd = pg->wr ? PQsocket(pg->wr) : -1;
  if (st->async == NULL || fd < 0) /* detached: settle and close poll() */
    return;
  if (pg->poll != NULL && pg->pollfd != fd)
    unwatch(pg);
  if (pg->poll == NULL) {
    uv_poll_t *p = malloc(sizeof *p);
    if (p == NULL || uv_poll_init(st->loop, p, fd) != 0) {
      free(p);
      hw_log("store", "cannot watch the PostgreSQL connection");
      return;
    }
    p->data = st;
    pg->poll = p;
    pg->pollfd = fd;
  }
  uv_poll_start(pg->poll, events, on_poll);
}

static void wake(hw_store_t *st) {
  if (st->async != NULL)
    uv_async_send(st->async);
  uv_cond_broadcast(&st->donecv);
}


static void append(hw_op_t **list, hw_op_t *more) {
  while (*list != NULL)
    list = &(*list)->next;
  *list = more;
}

static size_t count_ops(const hw_op_t *op) {
  size_t n = 0;
  for (; op != NULL; op = op->next)
    n++;
  return n;
}

/* The store fails (st->failing set): retry after a pause growing to 1 s. */
static void failing(hw_store_t *st, const char *why, uint64_t now) {
  hw_pg_t *pg = st->pg;
  snprintf(st->reason, sizeof st->reason, "%s", why);
  st->failing = 1;
  pg->retry_at = now + pg->pause;
  pg->pause = pg->pause * 2 > HW_RETRY_MAX_NS ? HW_RETRY_MAX_NS
                                              : pg->pause * 2;
  pg->nfailed++;
  if (pg->failed_since == 0)
    pg->failed_since = now;
  if (pg->nfailed == 1 || now - pg->last_log > 5 * (uint64_t) 1000000000) {
    hw_log("store", "PostgreSQL: commit failed (%llu attempts so far; %zu "
           "writes kept for retry): %s", (unsigned long long) pg->nfailed,
           pg->nkept, why);
    pg->last_log = now;
  }
}

/* New writes while the store fails: request writes are refused now (their
 * waiters told), the others kept for the next attempt. */
static void refuse_new(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  hw_op_t *ops;
  hw_fail_t *f;
  size_t n;
  uv_mutex_lock(&st->mu);
  ops = st->shead;
  if (ops != NULL) {
    st->shead = NULL;
    st->stail = &st->shead;
    append(&pg->carry, hw_store__keep_ops(ops, NULL, &n));
    pg->nkept = count_ops(pg->carry);
    if ((f = calloc(1, sizeof *f)) != NULL) {
      f->lo = st->done;
      f->hi = st->shead_last;
      snprintf(f->msg, sizeof f->msg, "%s", st->reason);
      *st->newfails_tail = f;
      st->newfails_tail = &f->next;
    }
    st->done = st->shead_last;
    st->ncarry = pg->nkept;
    st->durable = pg->carry != NULL ? pg->carry->seq - 1 : st->done;
    wake(st);
  }
  uv_mutex_unlock(&st->mu);
}

/* The Sync's result (or the connection's loss) decides the batch. */
static void decide(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  uint64_t now = uv_hrtime();
  int ok = !pg->failed;
  hw_op_t *batch = pg->batch;

  pg->batch = NULL;
  free(pg->items);
  pg->items = NULL;
  pg->nitems = pg->item = 0;
  if (ok) {
    hw_store__free_ops(batch);
    pg->nkept = 0;
    if (pg->failed_since != 0)
      hw_log("store", "PostgreSQL: commits work again after %.1f s (%llu "
             "failed attempts)", (now - pg->failed_since) / 1e9,
             (unsigned long long) pg->nfailed);
    pg->failed_since = pg->nfailed = 0;
    pg->pause = HW_RETRY_MIN_NS;
    pg->quick = 0;
  } else {
    append(&batch, pg->carry); /* written meanwhile by refuse_new: later */
    pg->carry = hw_store__keep_ops(batch, pg->bad, &pg->nkept);
    if (pg->bad != NULL)
      hw_log("store", "write failed, dropped: %s", pg->msg);
  }
  uv_mutex_lock(&st->mu);
  if (pg->got_new && !ok) {
    hw_fail_t *f = calloc(1, sizeof *f);
    if (f != NULL) {
      f->lo = pg->lo;
      f->hi = pg->last;
      snprintf(f->msg, sizeof f->msg, "%s", pg->msg);
      *st->newfails_tail = f;
      st->newfails_tail = &f->next;
    } else {
      hw_log("store", "out of memory recording a failed batch");
    }
  }
  if (pg->got_new && st->done < pg->last)
    st->done = pg->last;
  st->ncarry = pg->nkept;
  st->durable = pg->carry != NULL ? pg->carry->seq - 1 : st->done;
  st->failing = 0;
  if (!ok && pg->retry && !pg->no_fail_mark)
    failing(st, pg->msg, now);
  wake(st);
  uv_mutex_unlock(&st->mu);
  pg->got_new = 0;
}

/* The writes connection is gone: a batch in flight failed (its commit may
 * or may not have happened; see docs/ARCHITECTURE.md), reconnect later. */
static void conn_lost(hw_store_t *st, const char *why) {
  hw_pg_t *pg = st->pg;
  char msg[200];
  /* the first loss after things worked is retried at once, without
   * refusing new requests (a server restart, an idle timeout, a pooler);
   * the store reports itself failing only if that does not work */
  int quick = !pg->quick && !st->failing && pg->state != PG_CONNECTING;
  hw_pg__copy_msg(msg, sizeof msg, "connection lost: ",
           why ? why : (pg->wr ? PQerrorMessage(pg->wr) : NULL));
  unwatch(pg);
  PQfinish(pg->wr);
  pg->wr = NULL;
  pg->flushing = 0;
  pg->session = 0;
  pg->need_rollback = 0;
  if (pg->state == PG_BUSY && pg->committed) {
    /* the COMMIT was answered before the connection went: stored */
    pg->state = PG_DOWN;
    decide(st);
  } else if (pg->state == PG_BUSY && !pg->failed && pg->sent_all) {
    /* it may have committed: decided once the token is read back (new
     * requests are refused meanwhile) */
    pg->state = PG_DOWN;
    pg->limbo = 1;
    pg->limbo_told = 0;
    pg->limbo_since = uv_hrtime();
    uv_mutex_lock(&st->mu);
    failing(st, msg, uv_hrtime());
    if (quick)
      pg->retry_at = uv_hrtime();
    uv_mutex_unlock(&st->mu);
  } else if (pg->state == PG_BUSY) {
    pg->state = PG_DOWN;
    if (!pg->failed) {
      pg->failed = 1;
      snprintf(pg->msg, sizeof pg->msg, "%s", msg);
    }
    pg->retry = 1;
    pg->bad = NULL;
    pg->no_fail_mark = quick; /* its requests get 503 all the same */
    decide(st);
    pg->no_fail_mark = 0;
  } else {
    pg->state = PG_DOWN;
    if (!quick) {
      uv_mutex_lock(&st->mu);
      failing(st, msg, uv_hrtime());
      uv_mutex_unlock(&st->mu);
    }
  }
  if (quick && !pg->limbo && !st->failing) {
    hw_log("store", "PostgreSQL: %s; reconnecting", msg);
    pg->quick = 1;
    start_connect(st);
    return;
  }
  pump(st); /* arms the retry timer; refuses what waits meanwhile */
}

/* After a reconnect: did the batch in limbo commit?  Its token in
 * store_meta says (read on the reads connection: one round trip). */
static void resolve(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  char key[300], err[256];
  const char *v[1] = {key};
  PGresult *r;
  int committed;

  snprintf(key, sizeof key, "commit:%s", pg->node);
  if (hw_pg__rd_ensure(st) != 0) {
    snprintf(err, sizeof err, "%s", st->errmsg);
    conn_lost(st, err);
    return;
  }
  r = PQexecParams(pg->rd, "SELECT v FROM store_meta WHERE k = $1", 1, NULL,
                   v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    hw_pg__copy_msg(err, sizeof err, "", PQresultErrorMessage(r));
    PQclear(r);
    conn_lost(st, err);
    return;
  }
  committed = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), pg->token) == 0;
  PQclear(r);
  hw_log("store", "PostgreSQL: the batch in flight when the connection was "
         "lost %s", committed ? "had committed" : "had not committed");
  pg->limbo = pg->limbo_told = 0;
  pg->state = PG_BUSY; /* decide it as the Sync would have */
  pg->failed = !committed;
  pg->retry = 1;
  pg->bad = NULL;
  uv_mutex_lock(&st->mu);
  snprintf(pg->msg, sizeof pg->msg, "%s", st->reason);
  uv_mutex_unlock(&st->mu);
  pg->state = PG_IDLE;
  decide(st);
}

static void connected(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  PQsetNoticeProcessor(pg->wr, hw_pg__quiet, NULL);
  if (PQsetnonblocking(pg->wr, 1) != 0 || PQenterPipelineMode(pg->wr) != 1) {
    conn_lost(st, PQerrorMessage(pg->wr));
    return;
  }
  pg->state = PG_IDLE;
  pg->session = 0;
  watch(st, UV_READABLE);
  if (pg->limbo)
    resolve(st);
}

static void connect_step(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  switch (PQconnectPoll(pg->wr)) {
  case PGRES_POLLING_READING: watch(st, UV_READABLE); break;
  case PGRES_POLLING_WRITING: watch(st, UV_WRITABLE); break;
  case PGRES_POLLING_OK: connected(st); pump(st); break;
  default: pg->state = PG_CONNECTING; conn_lost(st, PQerrorMessage(pg->wr));
  }
}

static void start_connect(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *vals[] = {"5", "hookwork", pg->url, NULL};
  /* a quick reconnect holds new requests (they are not refused): 1 s */
  uint64_t limit = (pg->quick && !st->failing ? 1 : 5) * (uint64_t) 1000000000;
  pg->wr = PQconnectStartParams(keys, vals, 1);
  pg->state = PG_CONNECTING;
  pg->connect_by = uv_hrtime() + limit;
  if (pg->timer != NULL)
    uv_timer_start(pg->timer, on_timer, limit / 1000000 + 1, 0);
  if (pg->wr == NULL || PQstatus(pg->wr) == CONNECTION_BAD) {
    conn_lost(st, pg->wr ? PQerrorMessage(pg->wr) : "out of memory");
    return;
  }
  watch(st, UV_WRITABLE);
}

static int transient(const char *sqlstate) {
  static const char *const classes[] = {"08", "25", "40", "53", "55", "57",
                                        "58", "XX", NULL};
  int i;
  if (sqlstate == NULL || strlen(sqlstate) < 2)
    return 1;
  for (i = 0; classes[i] != NULL; i++)
    if (strncmp(sqlstate, classes[i], 2) == 0)
      return 1;
  return 0;
}

#define MARK_SQL                                                             \
  "INSERT INTO store_meta(k, v) VALUES('commit:' ||"                         \
  " current_setting('hookwork.node', true), $1) ON CONFLICT(k) DO UPDATE"     \
  " SET v = excluded.v"

static int send_cmd(hw_pg_t *pg, const char *sql, hw_op_t *op) {
  pg->items[pg->nitems++] = op;
  return PQsendQueryParams(pg->wr, sql, 0, NULL, NULL, NULL, NULL, 0);
}

static void flush_out(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  int rc = PQflush(pg->wr);
  if (rc < 0) {
    conn_lost(st, NULL);
    return;
  }
  pg->flushing = rc == 1;
  watch(st, UV_READABLE | (pg->flushing ? UV_WRITABLE : 0));
}

/* One batch: [ROLLBACK] [session setup] BEGIN; the kept writes, then the
 * new ones; COMMIT; Sync, all in one pipeline. */
static void start_batch(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  const char *pv[HW_OP_MAXV];
  char nb[HW_OP_MAXV][32], *heap[HW_OP_MAXV];
  hw_op_t *newops, *op;
  size_t max;
  int i, ok = 1;

  /* a server that went away while we were idle is noticed now, before the
   * batch is sent into a dead socket (which would leave it in limbo) */
  if (!PQconsumeInput(pg->wr) || PQstatus(pg->wr) == CONNECTION_BAD) {
    conn_lost(st, NULL);
    return;
  }
  if (drain_idle(st) != 0)
    return;
  uv_mutex_lock(&st->mu);
  newops = st->shead;
  pg->lo = st->done;
  pg->got_new = newops != NULL;
  if (pg->got_new)
    pg->last = st->shead_last;
  st->shead = NULL;
  st->stail = &st->shead;
  uv_mutex_unlock(&st->mu);

  append(&pg->carry, newops); /* kept writes first: written first */
  pg->batch = pg->carry;
  pg->carry = NULL;
  pg->failed = 0;
  pg->retry = 1;
  pg->bad = NULL;
  pg->msg[0] = '\0';
  pg->sent_all = 0;
  pg->committed = 0;
  pg->commit_item = -1;
  snprintf(pg->token, sizeof pg->token, "%ld:%llu:%llu", (long) getpid(),
           (unsigned long long) pg->started, (unsigned long long) ++pg->batchno);
  max = count_ops(pg->batch) + HW_PG_NSTMTS + 7;
  pg->items = malloc(max * sizeof *pg->items);
  pg->nitems = pg->item = 0;
  pg->state = PG_BUSY;
  if (pg->items == NULL) {
    pg->failed = 1;
    snprintf(pg->msg, sizeof pg->msg, "out of memory");
    decide(st);
    pg->state = PG_IDLE;
    return;
  }
  if (pg->need_rollback)
    ok = send_cmd(pg, "ROLLBACK", NULL);
  pg->need_rollback = 0;
  if (ok && !pg->session) {
    const char *node[1] = {pg->node};
    ok = send_cmd(pg, "DEALLOCATE ALL", NULL);
    pg->items[pg->nitems++] = NULL;
    ok = ok && PQsendQueryParams(pg->wr, "SELECT set_config('hookwork.node',"
                                 " $1, false)", 1, NULL, node, NULL, NULL, 0);
    for (i = 0; ok && i < HW_PG_NSTMTS; i++) {
      if (!hw_store_stmt_is_write(i))
        continue;
      pg->items[pg->nitems++] = NULL;
      ok = PQsendPrepare(pg->wr, hw_pg_stmts[i].name, hw_pg_stmts[i].sql, 0,
                         NULL);
    }
    pg->items[pg->nitems++] = NULL;
    ok = ok && PQsendPrepare(pg->wr, "hw_commit_mark", MARK_SQL, 1, NULL);
  }
  ok = ok && send_cmd(pg, "BEGIN", NULL);
  for (op = pg->batch; ok && op != NULL; op = op->next) {
    if (hw_pg__params(pg, op->id, op->v, op->n, 0, pv, nb, heap) != 0) {
      ok = 0;
      break;
    }
    pg->items[pg->nitems++] = op;
    ok = PQsendQueryPrepared(pg->wr, hw_pg_stmts[op->id].name, op->n, pv,
                             NULL, NULL, 0);
    hw_pg__free_heap(heap, op->n);
  }
  if (ok) {
    const char *tok[1] = {pg->token};
    pg->items[pg->nitems++] = NULL;
    ok = PQsendQueryPrepared(pg->wr, "hw_commit_mark", 1, tok, NULL, NULL, 0);
  }
  pg->commit_item = pg->nitems;
  ok = ok && send_cmd(pg, "COMMIT", NULL);
  ok = ok && PQpipelineSync(pg->wr);
  pg->sent_all = ok;
  if (!ok) {
    conn_lost(st, NULL);
    return;
  }
  flush_out(st);
}

/* Results as they arrive: the first error names the batch's failure (and
 * the op whose own data failed); the Sync's result decides it. */
static void read_results(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  int nulls = 0;
  if (!PQconsumeInput(pg->wr)) {
    conn_lost(st, NULL);
    return;
  }
  while (pg->state == PG_BUSY && !PQisBusy(pg->wr)) {
    PGresult *r = PQgetResult(pg->wr);
    ExecStatusType s;
    if (r == NULL) {
      if (++nulls > 1)
        break;
      continue;
    }
    nulls = 0;
    s = PQresultStatus(r);
    if (s == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      pg->need_rollback = PQtransactionStatus(pg->wr) != PQTRANS_IDLE;
      pg->session = !pg->failed; /* its settings may have been rolled back */
      pg->state = PG_IDLE;
      decide(st);
      break;
    }
    if (s == PGRES_COMMAND_OK && pg->item == pg->commit_item && !pg->failed)
      pg->committed = 1;
    if (s == PGRES_FATAL_ERROR && !pg->failed && !pg->committed) {
      hw_op_t *op = pg->item < pg->nitems ? pg->items[pg->item] : NULL;
      const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      pg->failed = 1;
      pg->retry = op == NULL || transient(code);
      pg->bad = pg->retry ? NULL : op;
      if (op != NULL && !pg->retry) {
        char pre[100];
        snprintf(pre, sizeof pre, "%s: ", hw_pg_stmts[op->id].name);
        hw_pg__copy_msg(pg->msg, sizeof pg->msg, pre, PQresultErrorMessage(r));
      } else {
        hw_pg__copy_msg(pg->msg, sizeof pg->msg, "", PQresultErrorMessage(r));
      }
    }
    pg->item++;
    PQclear(r);
  }
  if ((pg->state == PG_BUSY || pg->state == PG_IDLE) && pg->wr != NULL &&
      PQstatus(pg->wr) == CONNECTION_BAD)
    conn_lost(st, NULL);
}

/* Idle, nothing sent: any result is the server's own, e.g. the FATAL of
 * a connection it is ending (pg_terminate_backend, shutdown).  Non-zero
 * when the connection is lost (conn_lost called). */
static int drain_idle(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  char msg[200];
  PGresult *r;
  int lost = 0;
  msg[0] = '\0';
  while (!PQisBusy(pg->wr) && (r = PQgetResult(pg->wr)) != NULL) {
    if (PQresultStatus(r) == PGRES_FATAL_ERROR && !lost) {
      lost = 1;
      hw_pg__copy_msg(msg, sizeof msg, "", PQresultErrorMessage(r));
    }
    PQclear(r);
  }
  if (!lost && PQstatus(pg->wr) != CONNECTION_BAD)
    return 0;
  conn_lost(st, msg[0] ? msg : NULL);
  return -1;
}

/* Each step may lose the connection and start another (CONNECTING, a new
 * PGconn): after each, only a connection still up is read. */
static void on_events(hw_store_t *st, int events) {
  hw_pg_t *pg = st->pg;
#define UP (pg->wr != NULL && (pg->state == PG_BUSY || pg->state == PG_IDLE))
  if (pg->state == PG_CONNECTING) {
    connect_step(st);
    return;
  }
  if (!UP)
    return;
  if ((events & UV_WRITABLE) && pg->flushing)
    flush_out(st);
  if (UP && (events & UV_READABLE)) {
    if (pg->state == PG_BUSY) {
      read_results(st);
    } else if (!PQconsumeInput(pg->wr) ||
               PQstatus(pg->wr) == CONNECTION_BAD) {
      conn_lost(st, NULL); /* the server went away while we were idle */
      return;
    } else if (drain_idle(st) != 0) {
      return;
    }
  }
#undef UP
  if (pg->state == PG_IDLE)
    pump(st);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  hw_store_t *st = h->data;
  if (st == NULL || st->pg == NULL)
    return;
  on_events(st, status < 0 ? UV_READABLE | UV_WRITABLE : events);
}

static void on_timer(uv_timer_t *t) {
  hw_store_t *st = t->data;
  if (st == NULL || st->pg == NULL)
    return;
  if (st->pg->state == PG_CONNECTING && uv_hrtime() >= st->pg->connect_by) {
    conn_lost(st, "timeout: no answer from the server while connecting");
    return;
  }
  pump(st);
}

/* The batch in limbo has waited long enough: its callers get 503 (if it
 * did commit, their requests run although they were refused: the one case
 * where a 503 is not the truth, see docs/ARCHITECTURE.md); its other
 * writes wait for the answer, to be kept or not. */
static void limbo_expire(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  hw_fail_t *f;
  pg->limbo_told = 1;
  hw_log("store", "PostgreSQL: no answer on whether the batch in flight "
         "committed after %.0f s: its requests are answered 503",
         HW_PG_LIMBO_NS / 1e9);
  uv_mutex_lock(&st->mu);
  if (pg->got_new && (f = calloc(1, sizeof *f)) != NULL) {
    f->lo = pg->lo;
    f->hi = pg->last;
    snprintf(f->msg, sizeof f->msg, "%s", st->reason);
    *st->newfails_tail = f;
    st->newfails_tail = &f->next;
    if (st->done < pg->last)
      st->done = pg->last;
  }
  pg->got_new = 0;
  wake(st);
  uv_mutex_unlock(&st->mu);
}

static void pump(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  uint64_t now = uv_hrtime();
  int fails, has_new;

  if (pg->limbo && !pg->limbo_told && now - pg->limbo_since >= HW_PG_LIMBO_NS)
    limbo_expire(st);
  uv_mutex_lock(&st->mu);
  fails = st->failing;
  has_new = st->shead != NULL;
  uv_mutex_unlock(&st->mu);
  if (fails && has_new && (!pg->limbo || pg->limbo_told))
    /* (in limbo its waiters are told first) */
    refuse_new(st);
  if (pg->state == PG_BUSY || pg->state == PG_CONNECTING)
    return;
  if (fails && now < pg->retry_at) {
    if (pg->timer != NULL)
      uv_timer_start(pg->timer, on_timer,
                     (pg->retry_at - now) / 1000000 + 1, 0);
    return;
  }
  if (pg->state == PG_DOWN) {
    start_connect(st);
    return;
  }
  if (has_new || pg->carry != NULL || fails)
    start_batch(st);
}

void hw_pg__sealed(hw_store_t *st) { pump(st); }

/* A long step holds the loop: without this, a batch in flight when a
 * checkpoint was sealed is read (and the checkpoint sent) only after the
 * step, and a kill -9 meanwhile loses the checkpoint.  Only what on_events
 * would do, without waiting: send what is unsent, read what has arrived,
 * start the next batch once the last one is decided. */
void hw_pg__turn(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  uint64_t now;
  if (pg->wr == NULL || (pg->state != PG_BUSY && !pg->flushing))
    return;
  now = uv_hrtime();
  if (now - pg->turn_at < 1000000)
    return;
  pg->turn_at = now;
  if (pg->flushing)
    flush_out(st);
  if (pg->state == PG_BUSY && pg->wr != NULL)
    read_results(st);
  if (pg->state == PG_IDLE)
    pump(st);
}

/* ---- open, settle, close ------------------------------------------------ */

int hw_pg__open(hw_store_t *st, const char *url, const char *node, char *err,
                size_t errlen) {
  hw_pg_t *pg = calloc(1, sizeof *pg);
  char what[128];
  int rc;
  if (pg == NULL || (pg->url = strdup(url)) == NULL) {
    free(pg);
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  st->pg = pg;
  pg->pollfd = -1;
  pg->pause = HW_RETRY_MIN_NS;
  pg->started = uv_hrtime();
  snprintf(pg->node, sizeof pg->node, "%s", node ? node : "");
  if ((pg->rd = hw_pg__connect_sync(url, err, errlen)) == NULL)
    return -EIO;
  if ((rc = hw_pg__schema(pg->rd, 0, what, sizeof what, err, errlen)) != 0)
    return rc;
  if (strncmp(what, "created", 7) == 0)
    hw_log("store", "PostgreSQL: %s", what);
  if ((rc = hw_pg__rd_setup(pg, err, errlen)) != 0)
    return rc;
  if ((pg->wr = hw_pg__connect_sync(url, err, errlen)) == NULL)
    return -EIO;
  if (PQsetnonblocking(pg->wr, 1) != 0 || PQenterPipelineMode(pg->wr) != 1) {
    hw_pg__copy_msg(err, errlen, "pipeline mode: ", PQerrorMessage(pg->wr));
    return -EIO;
  }
  pg->state = PG_IDLE;
  if ((pg->timer = malloc(sizeof *pg->timer)) == NULL) {
    snprintf(err, errlen, "out of memory");
    return -ENOMEM;
  }
  uv_timer_init(st->loop, pg->timer);
  pg->timer->data = st;
  pg->opened = 1;
  return 0;
}

/* Drives the writes connection with poll() until everything written has
 * been tried (the loop is not running: shutdown). */
int hw_pg__settle(hw_store_t *st, unsigned timeout_ms) {
  hw_pg_t *pg = st->pg;
  uint64_t until = uv_hrtime() + (uint64_t) timeout_ms * 1000000, now;
  int tries = 0, rc = 0;

  for (;;) {
    int idle_done;
    uv_mutex_lock(&st->mu);
    idle_done = st->shead == NULL && st->done >= st->seq;
    uv_mutex_unlock(&st->mu);
    if (pg->state == PG_IDLE || pg->state == PG_DOWN) {
      if (idle_done && (pg->carry == NULL || tries > 0))
        break;
      if (tries++ > 1) { /* tried twice: what is left is not stored */
        uv_mutex_lock(&st->mu);
        if (!st->failing)
          failing(st, pg->msg[0] ? pg->msg : "not stored", uv_hrtime());
        uv_mutex_unlock(&st->mu);
        if (pg->limbo) { /* unknown: its callers are told it failed */
          hw_log("store", "PostgreSQL: whether the last batch committed is "
                 "unknown (the server cannot be reached)");
          pg->limbo = pg->limbo_told = 0;
          pg->failed = 1;
          pg->retry = 1;
          decide(st);
        }
        refuse_new(st);
        break;
      }
      uv_mutex_lock(&st->mu);
      st->failing = 0; /* shutdown: one more attempt, now */
      uv_mutex_unlock(&st->mu);
      if (pg->state == PG_DOWN)
        start_connect(st);
      else
        start_batch(st);
      continue;
    }
    now = uv_hrtime();
    if (pg->state == PG_CONNECTING && now >= pg->connect_by) {
      conn_lost(st, "timeout: no answer from the server while connecting");
      continue;
    }
    if (now >= until) {
      rc = -ETIMEDOUT;
      break;
    } else {
      struct pollfd p = {PQsocket(pg->wr), POLLIN, 0};
      int ms = (int) ((until - now) / 1000000) + 1, ev = 0;
      if (pg->state == PG_CONNECTING || pg->flushing)
        p.events |= POLLOUT;
      if (p.fd < 0 || poll(&p, 1, ms > 200 ? 200 : ms) < 0)
        continue;
      if (p.revents & (POLLIN | POLLERR | POLLHUP))
        ev |= UV_READABLE;
      if (p.revents & POLLOUT)
        ev |= UV_WRITABLE;
      if (ev)
        on_events(st, ev);
    }
  }
  hw_store__notify(st, 0);
  return rc;
}

void hw_pg__detach(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  unwatch(pg);
  if (pg->timer != NULL) {
    pg->timer->data = NULL;
    uv_close((uv_handle_t *) pg->timer, timer_closed);
    pg->timer = NULL;
  }
}

void hw_pg__close(hw_store_t *st) {
  hw_pg_t *pg = st->pg;
  if (pg == NULL)
    return;
  if (pg->opened)
    hw_pg__settle(st, 10000);
  if (pg->carry != NULL)
    hw_log("store", "%zu writes could not be stored before close: %s; what "
           "they record runs again after restart", count_ops(pg->carry),
           pg->msg);
  hw_store__free_ops(pg->carry);
  hw_store__free_ops(pg->batch);
  uv_mutex_lock(&st->mu);
  st->ncarry = 0;
  uv_mutex_unlock(&st->mu);
  hw_pg__detach(st);
  PQfinish(pg->wr);
  PQfinish(pg->rd);
  free(pg->items);
  free(pg->url);
  free(pg);
  st->pg = NULL;
}
