/* store: the embedded durable store (SQLite in WAL mode).
 *
 * Owns: the data directory's lock (one engine per store), two SQLite
 * connections (writer, reader) and a checkpointer's, their prepared
 * statements, the queue of writes not yet committed and the writer thread.
 * Uses: libuv (loop, thread, mutex, async), SQLite.
 *
 * The writer connection is used only by the writer thread, so the fsync of
 * a commit never blocks the loop; the reader connection is used on the loop
 * thread and sees what has committed.
 *
 * Writes are queued (copied) and committed in groups by the writer thread:
 * every write queued while a commit is in flight goes into the next one,
 * one SQLite transaction and one fsync for all of them (group commit).  A
 * batch is all or nothing.  Two kinds of write:
 *   - a request's write (hw_store_write_req): what makes an accepted request
 *     durable.  When its batch fails it is dropped and hw_store_await tells
 *     the one waiting for it, so the request is refused (never acknowledged
 *     and never stored);
 *   - every other write (hw_store_write): a run's outcome, history, parks.
 *     Nobody answers a caller on them, so when their batch fails they are
 *     kept, in order, and committed first when the store works again.
 * While commits fail the store reports itself failing (hw_store_refusal)
 * and retries with a growing pause (at most 1 s) until a commit succeeds.
 */
#ifndef HW_STORE_H
#define HW_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct hw_store_s hw_store_t;

enum { HW_V_NULL, HW_V_INT, HW_V_REAL, HW_V_TEXT };

typedef struct hw_val_s {
  int type;
  int64_t i;
  double d;
  const char *s; /* not owned by the value */
  size_t n;
} hw_val_t;

/* Called on the loop thread once writes are committed (status 0) or were
 * not stored (negative; reason says why, e.g. "commit: disk I/O error"). */
typedef void (*hw_store_cb)(int status, const char *reason, void *arg);
/* Called per result row; return non-zero to stop. */
typedef int (*hw_store_row_cb)(int ncols, const hw_val_t *cols,
                               const char *const *names, void *arg);

/* Locks DIR (DIR/lock, held until hw_store_close: another holder gives
 * -EBUSY and "DIR is in use by another engine (pid N)" in err, with nothing
 * written), opens (creating) DIR/hookwork.db and applies the schema.
 * HOOKWORK_MAX_PENDING (default 100000) bounds the writes not yet
 * committed (see hw_store_refusal).  Returns 0 or a negative code with err
 * filled in. */
int hw_store_open(uv_loop_t *loop, const char *dir, hw_store_t **out,
                  char *err, size_t errlen);
/* The same store in PostgreSQL (store_pg.h): url is postgres://..., node
 * this engine's name (the owner of the rows it writes).  No directory is
 * locked: any number of engines share one database.  The schema is created
 * on an empty database; an older or newer schema version is refused with
 * err naming both.  libpq's message in err when the server cannot be
 * reached. */
int hw_store_open_pg(uv_loop_t *loop, const char *url, const char *node,
                     hw_store_t **out, char *err, size_t errlen);
/* Commits what is queued (synchronously, one attempt: this is the shutdown
 * path), tells every waiter still queued, finalizes statements, closes the
 * connections and releases the lock. */
int hw_store_close(hw_store_t *st);

/* Closes the loop handles the store owns (engine stop) so the loop can run
 * dry; writes still commit, and hw_store_close reports them. */
void hw_store_detach(hw_store_t *st);

/* Statement ids by name: writes and queries share one table.  Returns the id
 * or -1 when there is no such statement. */
int hw_store_stmt_id(const char *name);
int hw_store_stmt_is_write(int id);
/* How many values statement id binds (-1 for no such statement). */
int hw_store_stmt_nparams(int id);

/* Queues a write of statement `id` with n values (copied; n must be the
 * statement's count).  Kept until committed.  0 or negative. */
int hw_store_write(hw_store_t *st, int id, const hw_val_t *vals, int n);
/* Queues a request's write (see above); *seq names it for hw_store_await. */
int hw_store_write_req(hw_store_t *st, int id, const hw_val_t *vals, int n,
                       uint64_t *seq);
/* cb once the request's write `seq` is committed (0) or dropped with its
 * failed batch (negative).  Never called synchronously. */
int hw_store_await(hw_store_t *st, uint64_t seq, hw_store_cb cb, void *arg);
/* cb(0) once every write queued before this call has committed (writes
 * whose batch failed are retried first).  Never called synchronously; at
 * close, a flush that never committed is told -EIO. */
int hw_store_flush(hw_store_t *st, hw_store_cb cb, void *arg);
/* Starts a batch if writes wait and none is in flight (called once per loop
 * iteration by the engine, so one iteration's writes share a commit). */
void hw_store_kick(hw_store_t *st);
/* Hands everything written so far to the writer now, mid-iteration (a
 * checkpoint that must not wait for a long step to end). */
void hw_store_seal(hw_store_t *st);
/* Called now and then while a step holds the loop (the step budget's count
 * hook): on PostgreSQL, where the batch machine runs on the loop, reads the
 * in-flight batch's results that have arrived and sends what was sealed
 * meanwhile, so a checkpoint commits while a long step runs (as the SQLite
 * writer thread does).  Never blocks; at most one look per millisecond. */
void hw_store_turn(hw_store_t *st);
/* Shutdown: hands everything to the writer, waits (blocking, at most
 * timeout_ms) until it has tried to commit all of it, then tells the
 * waiters whose writes were decided.  0, or -ETIMEDOUT. */
int hw_store_settle(hw_store_t *st, unsigned timeout_ms);
/* Number of writes queued, in flight or kept for retry, plus one while
 * anyone waits (0 when everything is durable). */
size_t hw_store_pending(const hw_store_t *st);
/* Whether a new request must be refused: 0 when the store takes writes,
 * 1 with a reason ("disk I/O error", "too many writes waiting (100000)")
 * while commits fail or HOOKWORK_MAX_PENDING writes are uncommitted. */
int hw_store_refusal(const hw_store_t *st, char *reason, size_t len);

/* The sequence number of the last write queued and of the last one the
 * writer has finished: a write queued when `written` was N is durable (or
 * failed) once `done` >= N.  Lets the Lua side keep in memory exactly what
 * readers cannot see yet. */
void hw_store_progress(const hw_store_t *st, uint64_t *written,
                       uint64_t *done);

/* Ids: transactions, jobs, history rows and kept requests are numbered by
 * the store, so every path that creates one (the Lua side, the C accept
 * path, and, on a shared store, every node) draws from one counter per
 * kind.  On SQLite the counters go on from the largest ids stored. */
enum { HW_ID_TX, HW_ID_JOB, HW_ID_HIST, HW_ID_EARLY, HW_ID_KINDS };
/* The next id of `kind` in *id: 0, or negative (-EINVAL: no such kind). */
int hw_store_next_id(hw_store_t *st, int kind, int64_t *id);
/* The largest id of `kind` handed out so far (0 before the first). */
int64_t hw_store_last_id(const hw_store_t *st, int kind);

/* Runs a read statement on the reader connection; rows go to cb. */
int hw_store_query(hw_store_t *st, int id, const hw_val_t *vals, int n,
                   hw_store_row_cb cb, void *arg);
/* The last query error (loop thread). */
const char *hw_store_errmsg(hw_store_t *st);

#endif
