/* store: the embedded durable store (SQLite in WAL mode).
 *
 * Owns: two SQLite connections and their prepared statements.  The writer
 * connection is used only by the writer thread, so the
 * fsync of a commit never blocks the loop; the reader connection is used on
 * the loop thread and sees what has committed.
 *
 * Writes are queued (hw_store_write copies its values) and committed in
 * groups by a writer thread: every write queued while a commit is in flight
 * goes into the next one, one SQLite transaction and one fsync for all of
 * them (group commit).
 * hw_store_flush asks to be told when everything queued so far is durable.
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

/* Called on the loop thread once a flush's writes are committed (status 0) or
 * failed (negative). */
typedef void (*hw_store_cb)(int status, void *arg);
/* Called per result row; return non-zero to stop. */
typedef int (*hw_store_row_cb)(int ncols, const hw_val_t *cols,
                               const char *const *names, void *arg);

/* Opens (creating) DIR/hookwork.db, applies the schema. Returns 0 or a
 * negative code with err filled in. */
int hw_store_open(uv_loop_t *loop, const char *dir, hw_store_t **out,
                  char *err, size_t errlen);
/* Waits for the batch in flight, commits what is queued (synchronously: this
 * is the shutdown path), finalizes statements, closes both connections. */
int hw_store_close(hw_store_t *st);

/* Closes the loop handle the store owns (engine stop) so the loop can run
 * dry; writes still commit, and hw_store_close reports them. */
void hw_store_detach(hw_store_t *st);

/* Statement ids by name: writes and queries share one table.  Returns the id
 * or -1 when there is no such statement. */
int hw_store_stmt_id(const char *name);
int hw_store_stmt_is_write(int id);

/* Queues a write of statement `id` with n values (copied). 0 or negative. */
int hw_store_write(hw_store_t *st, int id, const hw_val_t *vals, int n);
/* cb(status, arg) once every write queued before this call has committed.
 * Never called synchronously. */
int hw_store_flush(hw_store_t *st, hw_store_cb cb, void *arg);
/* Starts a batch if writes wait and none is in flight (called once per loop
 * iteration by the engine, so one iteration's writes share a commit). */
void hw_store_kick(hw_store_t *st);
/* Hands everything written so far to the writer now, mid-iteration (a
 * checkpoint that must not wait for a long step to end). */
void hw_store_seal(hw_store_t *st);
/* Number of writes queued or in flight (0 when everything is durable). */
size_t hw_store_pending(const hw_store_t *st);

/* Runs a read statement on the reader connection; rows go to cb. */
int hw_store_query(hw_store_t *st, int id, const hw_val_t *vals, int n,
                   hw_store_row_cb cb, void *arg);
const char *hw_store_errmsg(hw_store_t *st);

#endif
