/* reader: admin reads off the loop thread.
 *
 * Owns: one thread with its own read-only SQLite connection to the store
 * file, a queue of queries, and the uv_async handle that brings results
 * back to the loop.  Listing, counting and searching over millions of rows
 * runs here, so a webhook never waits behind an admin read: the loop only
 * copies the (small) result rows into Lua when they arrive.
 *
 * On a PostgreSQL store the thread has its own libpq connection instead
 * (reader_pg.h); callers write `?N` placeholders for both.
 *
 * Uses: store.h (hw_val_t), SQLite, reader_pg.h.
 */
#ifndef HW_READER_H
#define HW_READER_H

#include "store.h"

#include <uv.h>

typedef struct hw_reader_s hw_reader_t;

/* rows one query may return (an admin read is paged far below this) */
#define HW_READER_MAXROWS 200000

typedef struct hw_reader_res_s {
  int ncols, nrows;
  char **names;    /* ncols */
  hw_val_t *vals;  /* nrows * ncols; text values own their bytes */
  char errmsg[256];
} hw_reader_res_t;

/* status 0 with res, or negative with res->errmsg.  res is freed after cb
 * returns.  Called on the loop thread, never synchronously. */
typedef void (*hw_reader_cb)(int status, hw_reader_res_t *res, void *arg);

/* dir: the SQLite store's directory, or a postgres:// URL. */
int hw_reader_open(uv_loop_t *loop, const char *dir, hw_reader_t **out,
                   char *err, size_t errlen);
/* Queues sql (any read statement, copied) with n values (copied).  Returns
 * the query's handle, or NULL when out of memory. */
void *hw_reader_query(hw_reader_t *rd, const char *sql, const hw_val_t *vals,
                      int n, hw_reader_cb cb, void *arg);
/* Closes the loop handle (engine stop); results still pending are dropped. */
void hw_reader_detach(hw_reader_t *rd);
/* Stops the thread, closes the connection, frees everything. */
void hw_reader_close(hw_reader_t *rd);

#endif
