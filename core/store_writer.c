/* store_writer: the store's writer and checkpointer threads (see store.c
 * for the design).  The writer commits each batch handed over in one SQLite
 * transaction, all or nothing; after a failure it keeps the writes nobody
 * waits for, drops the requests' writes (recording the failed range), and
 * retries with a pause while the disk fails.
 *
 * Owns: the writer's kept writes and its message buffer (st->wmsg), which
 * only it touches; everything it shares with the loop is under st->mu.
 * Uses: SQLite (the writer and checkpointer connections), libuv threads. */
#include "store_int.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void hw_store__free_ops(hw_op_t *op) {
  while (op != NULL) {
    hw_op_t *next = op->next;
    free(op->buf);
    free(op);
    op = next;
  }
}

/* Errors of the disk or the lock pass; errors of a statement's own data
 * (a constraint, a type) never will. */
static int transient(int code) {
  switch (code & 0xff) {
  case SQLITE_CONSTRAINT: case SQLITE_MISMATCH: case SQLITE_RANGE:
  case SQLITE_TOOBIG: case SQLITE_ERROR:
    return 0;
  default:
    return 1;
  }
}

/* Writer thread: one SQLite transaction for the whole batch, all or
 * nothing.  On failure *bad is the op whose own data failed (never
 * transient), or NULL when the disk failed; st->wmsg says why. */
static int run_batch(hw_store_t *st, hw_op_t *ops, int probe, hw_op_t **bad,
                     int *retry) {
  hw_op_t *op;
  int rc;

  *bad = NULL;
  *retry = 1;
  if (sqlite3_exec(st->wr, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(st->wmsg, sizeof st->wmsg, "begin: %s", sqlite3_errmsg(st->wr));
    return -EIO;
  }
  if (probe) {
    int id = hw_store_stmt_id("store_probe");
    hw_val_t v = {HW_V_INT, (int64_t) uv_hrtime(), 0, NULL, 0};
    sqlite3_stmt *s = st->wstmt[id];
    if (hw_store__bind(s, &v, 1) != SQLITE_OK || sqlite3_step(s) != SQLITE_DONE) {
      snprintf(st->wmsg, sizeof st->wmsg, "%s", sqlite3_errmsg(st->wr));
      sqlite3_reset(s);
      goto fail;
    }
    sqlite3_reset(s);
  }
  for (op = ops; op != NULL; op = op->next) {
    sqlite3_stmt *s = st->wstmt[op->id];
    rc = hw_store__bind(s, op->v, op->n);
    if (rc == SQLITE_OK)
      rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) {
      int code = sqlite3_extended_errcode(st->wr);
      snprintf(st->wmsg, sizeof st->wmsg, "%s", sqlite3_errmsg(st->wr));
      if (!transient(code)) {
        *bad = op;
        *retry = 0;
        hw_log("store", "write %s failed, dropped: %s", hw_store__stmt_name(op->id),
               st->wmsg);
      }
      sqlite3_reset(s);
      sqlite3_clear_bindings(s);
      goto fail;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
  if (sqlite3_exec(st->wr, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
    return 0;
  snprintf(st->wmsg, sizeof st->wmsg, "%s", sqlite3_errmsg(st->wr));
fail:
  if (!sqlite3_get_autocommit(st->wr))
    sqlite3_exec(st->wr, "ROLLBACK", NULL, NULL, NULL);
  return -EIO;
}

/* After a failed batch: request writes and the bad op go, the others stay
 * (in order) for the next batch.  Returns the kept list. */
hw_op_t *hw_store__keep_ops(hw_op_t *ops, hw_op_t *bad, size_t *nkept) {
  hw_op_t *kept = NULL, **kt = &kept, *next;
  *nkept = 0;
  for (; ops != NULL; ops = next) {
    next = ops->next;
    ops->next = NULL;
    if (ops->req || ops == bad) {
      free(ops->buf);
      free(ops);
    } else {
      *kt = ops;
      kt = &ops->next;
      (*nkept)++;
    }
  }
  return kept;
}

/* HOOKWORK_STORE_TRACE: a commit's duration and size (writer thread);
 * once a second, the line.  Called under mu. */
static void trace_commit(hw_store_t *st, uint64_t ns, unsigned ops) {
  hw_store_trace_t *t = &st->tr, c;
  uint64_t now = uv_hrtime();
  unsigned b = 0, i;
  char line[300];
  int off;

  while (b + 1 < HW_TRACE_BUCKETS && ns >= ((uint64_t) 1000000 << b))
    b++;
  if (t->since == 0)
    t->since = now;
  t->commits++;
  t->ops += ops;
  t->hist[b]++;
  t->commit_sum_ns += ns;
  if (ns > t->commit_max_ns)
    t->commit_max_ns = ns;
  if (now - t->since < (uint64_t) 1000000000)
    return;
  c = *t;
  memset(t, 0, sizeof *t);
  t->since = now;
  off = snprintf(line, sizeof line, "%u commits (%u writes, %u pages), mean "
                 "%.2f max %.2f ms; by ms", c.commits, c.ops, c.frames,
                 c.commit_sum_ns / 1e6 / c.commits, c.commit_max_ns / 1e6);
  for (i = 0; i < HW_TRACE_BUCKETS && off < (int) sizeof line - 20; i++)
    if (c.hist[i])
      off += snprintf(line + off, sizeof line - off, " <%u:%u", 1u << i,
                      c.hist[i]);
  hw_log("store", "trace: %s; checkpointer %u passes, mean %.2f max %.2f "
         "ms; writer %u passes, max %.2f ms; WAL at most %d frames, started "
         "over %u times", line, c.ckpts,
         c.ckpts ? c.ck_sum_ns / 1e6 / c.ckpts : 0.0, c.ck_max_ns / 1e6,
         c.wck, c.wck_max_ns / 1e6, c.wal_max, c.restarts);
}

/* Writer thread, inside each COMMIT: wakes the checkpointer every
 * HW_WAL_STEP frames (this replaces SQLite's automatic checkpoint, which
 * would copy the frames and sync the database file on the writer). */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames) {
  hw_store_t *st = arg;
  int wake;
  (void) db;
  (void) name;
  uv_mutex_lock(&st->mu);
  if (frames < st->wal_frames) { /* the WAL started over */
    st->wal_woke = 0;
    st->tr.restarts++;
    st->tr.frames += (unsigned) frames;
  } else {
    st->tr.frames += (unsigned) (frames - st->wal_frames);
  }
  st->wal_frames = frames;
  if (frames > st->tr.wal_max)
    st->tr.wal_max = frames;
  wake = frames - st->wal_woke >= st->wal_step;
  if (wake) {
    st->wal_woke = frames;
    st->ck_due = 1;
    uv_cond_signal(&st->ckcv);
  }
  uv_mutex_unlock(&st->mu);
  return SQLITE_OK;
}

/* Writer thread, between batches, when the checkpointer asked: copies the
 * frames committed since its last pass (a commit or two), so the next
 * write transaction finds every frame copied and starts the WAL over.
 * Called without mu. */
static void finish_checkpoint(hw_store_t *st) {
  uint64_t t0 = uv_hrtime(), ns;
  int rc = sqlite3_wal_checkpoint_v2(st->wr, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                     NULL, NULL);
  ns = uv_hrtime() - t0;
  uv_mutex_lock(&st->mu);
  st->ck_asked = 0;
  uv_cond_signal(&st->ckcv); /* the checkpointer may go on */
  if (rc == SQLITE_OK) {
    st->tr.wck++;
    if (ns > st->tr.wck_max_ns)
      st->tr.wck_max_ns = ns;
  }
  uv_mutex_unlock(&st->mu);
}

void hw_store__writer_main(void *arg) {
  hw_store_t *st = arg;
  hw_op_t *carry = NULL, *batch, *newops, *bad, **t;
  uint64_t last = 0, lo, retry_at = 0, pause = HW_RETRY_MIN_NS;
  uint64_t failed_since = 0, last_log = 0, nfailed = 0, now;
  size_t nkept = 0;
  char why[200];
  int rc, retry, probe = 0, stop_tries = 0, disk_failing, refused, has_req;
  int failed, got_new, finish = 0;
  uint64_t t0 = 0;
  unsigned nops;

  /* named for perf, top and the durability tests (who syncs what) */
  pthread_setname_np(pthread_self(), "hw-writer");
  /* the writer never checkpoints by itself: the hook replaces SQLite's
   * automatic checkpoint (wal_autocheckpoint) */
  sqlite3_wal_hook(st->wr, wal_hook, st);
  uv_mutex_lock(&st->mu);
  for (;;) {
    if (finish) {
      uv_mutex_unlock(&st->mu);
      finish_checkpoint(st);
      uv_mutex_lock(&st->mu);
      finish = 0;
      continue;
    }
    /* wait for work; while the disk fails, retry on the pause only */
    while (!st->stop) {
      if (st->failing) {
        now = uv_hrtime();
        if (now >= retry_at)
          break;
        uv_cond_timedwait(&st->cv, &st->mu, retry_at - now);
      } else if (st->shead != NULL || carry != NULL) {
        break;
      } else {
        uv_cond_wait(&st->cv, &st->mu);
      }
    }
    if (st->stop && st->shead == NULL && (carry == NULL || stop_tries > 0))
      break; /* everything committed, or the last attempt at close failed */
    newops = st->shead;
    lo = st->done;
    got_new = newops != NULL;
    if (got_new)
      last = st->shead_last;
    disk_failing = st->failing;
    st->shead = NULL;
    st->stail = &st->shead;
    if (st->stop)
      stop_tries++;
    uv_mutex_unlock(&st->mu);

    /* while the disk fails, requests' writes are not even tried (their
     * requests are refused): a failed attempt could leave them in the WAL */
    refused = 0;
    if (disk_failing && newops != NULL) {
      size_t n;
      newops = hw_store__keep_ops(newops, NULL, &n);
      refused = 1;
    }
    has_req = 0;
    for (t = &newops; *t != NULL; t = &(*t)->next)
      has_req |= (*t)->req;
    for (t = &carry; *t != NULL; t = &(*t)->next)
      ;
    *t = newops; /* kept writes first: they were written first */
    batch = carry;
    carry = NULL;
    nops = 0;
    if (st->trace) {
      for (t = &batch; *t != NULL; t = &(*t)->next)
        nops++;
      t0 = uv_hrtime();
    }
    rc = run_batch(st, batch, probe, &bad, &retry);
    failed = rc != 0;
    if (rc != 0) {
      carry = hw_store__keep_ops(batch, bad, &nkept);
      snprintf(why, sizeof why, "%s", st->wmsg);
      if (retry && has_req) {
        /* before anyone hears of the failure, commit again without the
         * requests: a commit whose fsync failed can leave frames in the WAL
         * that a crash would read back as committed; this one overwrites
         * them (and may well succeed) */
        batch = carry;
        carry = NULL;
        rc = run_batch(st, batch, 1, &bad, &retry);
        if (rc != 0)
          carry = hw_store__keep_ops(batch, bad, &nkept);
      }
    }
    now = uv_hrtime();
    if (rc == 0) {
      if (batch != NULL)
        hw_store__free_ops(batch);
      nkept = 0;
      probe = 0;
      if (failed_since != 0 || failed)
        hw_log("store", "commits work again after %.1f s (%llu failed "
               "attempts)", failed_since ? (now - failed_since) / 1e9 : 0.0,
               (unsigned long long) nfailed + failed);
      failed_since = nfailed = 0;
      pause = HW_RETRY_MIN_NS;
    } else {
      probe = 1;
      if (retry) {
        nfailed++;
        if (failed_since == 0)
          failed_since = now;
        if (nfailed == 1 || now - last_log > 5 * (uint64_t) 1000000000) {
          hw_log("store", "commit failed (%llu attempts so far; %zu writes "
                 "kept for retry): %s", (unsigned long long) nfailed, nkept,
                 st->wmsg);
          last_log = now;
        }
      }
    }

    uv_mutex_lock(&st->mu);
    if (got_new && (failed || refused)) { /* its requests were not stored */
      hw_fail_t *f = calloc(1, sizeof *f);
      if (f != NULL) {
        f->lo = lo;
        f->hi = last;
        snprintf(f->msg, sizeof f->msg, "%s", failed ? why : st->reason);
        *st->newfails_tail = f;
        st->newfails_tail = &f->next;
      } else {
        hw_log("store", "out of memory recording a failed batch");
      }
    }
    if (got_new)
      st->done = last;
    st->ncarry = nkept;
    st->durable = carry != NULL ? carry->seq - 1 : st->done;
    st->failing = rc != 0 && retry;
    if (st->failing) {
      snprintf(st->reason, sizeof st->reason, "%s", st->wmsg);
      retry_at = now + pause;
      pause = pause * 2 > HW_RETRY_MAX_NS ? HW_RETRY_MAX_NS : pause * 2;
    }
    if (st->async != NULL)
      uv_async_send(st->async);
    uv_cond_broadcast(&st->donecv);
    if (st->trace && !failed)
      trace_commit(st, now - t0, nops);
    if (st->ck_ask && !st->failing) {
      st->ck_ask = 0;
      st->ck_asked = 1;
      finish = 1; /* after the loop heard of this batch */
    }
  }
  if (carry != NULL)
    hw_log("store", "%zu writes could not be stored before close: %s; what "
           "they record runs again after restart", nkept, st->wmsg);
  hw_store__free_ops(carry);
  st->ncarry = 0;
  uv_cond_broadcast(&st->donecv);
  uv_mutex_unlock(&st->mu);
}

void hw_store__checkpointer_main(void *arg) {
  hw_store_t *st = arg;
  uint64_t t0, ns;
  int nlog, nckpt, rc, last = -1;

  pthread_setname_np(pthread_self(), "hw-checkpoint");
  uv_mutex_lock(&st->mu);
  while (!st->stop) {
    /* while the writer finishes, it has the WAL to itself */
    if (!st->ck_due || st->ck_ask || st->ck_asked)
      uv_cond_timedwait(&st->ckcv, &st->mu, (uint64_t) 250e6);
    if (st->stop)
      break;
    if (st->ck_ask || st->ck_asked)
      continue;
    st->ck_due = 0;
    uv_mutex_unlock(&st->mu);
    nlog = nckpt = 0;
    t0 = uv_hrtime();
    rc = sqlite3_wal_checkpoint_v2(st->ck, NULL, SQLITE_CHECKPOINT_PASSIVE,
                                   &nlog, &nckpt);
    ns = uv_hrtime() - t0;
    uv_mutex_lock(&st->mu);
    if (st->trace && rc == SQLITE_OK) {
      st->tr.ckpts++;
      st->tr.ck_sum_ns += ns;
      if (ns > st->tr.ck_max_ns)
        st->tr.ck_max_ns = ns;
    }
    /* a long WAL: once a pass has copied (nearly) all it saw, the writer
     * copies what came since; until then passes follow each other, with a
     * pause when one made no progress (a reader still reads the frames) */
    if (rc == SQLITE_OK && nlog >= st->wal_limit) {
      if (nlog - nckpt < st->wal_step)
        st->ck_ask = 1;
      else if (nckpt != last)
        st->ck_due = 1;
      else
        uv_cond_timedwait(&st->ckcv, &st->mu, (uint64_t) 2e6);
    }
    last = nckpt;
  }
  uv_mutex_unlock(&st->mu);
}
