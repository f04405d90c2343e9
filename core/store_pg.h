/* store_pg: the PostgreSQL backend behind store.h's unchanged API.
 *
 * Owns: two libpq connections (writes, reads), the writes connection's
 * uv_poll and retry timer, the kept writes of a failed batch, the id blocks
 * drawn from the database's sequences, and the schema version check.
 * Uses: libpq (pipeline mode), libuv, the queue, waiters and failed ranges
 * of store.c (store_int.h), store_sql_pg.h.
 *
 * Writes run on the loop thread, never blocking it: the writes connection
 * is non-blocking, in pipeline mode, watched with uv_poll.  Each batch is
 * BEGIN; every queued write (prepared once per connection); COMMIT; Sync,
 * and every write queued while a batch is in flight goes into the next one
 * (group commit), exactly as the SQLite writer thread does.  Request writes
 * of a failed batch are dropped and their waiters told; other writes are
 * kept, in order, and retried first.  A lost connection is reopened with a
 * growing pause (at most 1 s) while hw_store_refusal says why.
 *
 * Reads (hw_store_query) and id blocks use the second connection
 * synchronously: each waits one loopback round trip on the loop thread
 * (this iteration's simplification; never on the writes connection). */
#ifndef HW_STORE_PG_H
#define HW_STORE_PG_H

#include "store.h"

#include <stddef.h>

typedef struct hw_pg_s hw_pg_t;

/* Whether `where` names a PostgreSQL store (postgres:// or postgresql://). */
int hw_pg_is_url(const char *where);

/* url with its password (user:PASSWORD@ and password=...) replaced by
 * ***, for messages and logs. */
void hw_pg_redact(const char *url, char *out, size_t len);

/* What `hookwork migrate` does: creates or upgrades the schema of the
 * database at url.  *what says what was done ("created schema version 1").
 * 0, or negative with err filled in (libpq's message, or a newer schema). */
int hw_pg_migrate(const char *url, char *what, size_t whatlen, char *err,
                  size_t errlen);

/* store.c's hooks (loop thread; st->pg set) */
int hw_pg__open(hw_store_t *st, const char *url, const char *node, char *err,
                size_t errlen);
void hw_pg__sealed(hw_store_t *st);
void hw_pg__turn(hw_store_t *st);
int hw_pg__settle(hw_store_t *st, unsigned timeout_ms);
void hw_pg__detach(hw_store_t *st);
void hw_pg__close(hw_store_t *st);
int hw_pg__query(hw_store_t *st, int id, const hw_val_t *vals, int n,
                 hw_store_row_cb cb, void *arg);
int hw_pg__next_id(hw_store_t *st, int kind, int64_t *id);

#endif
