/* store_pg_int: the PostgreSQL backend's private parts, shared by
 * store_pg.c (the writes connection: batches, reconnects, open and close)
 * and store_pg_read.c (the reads connection, values, schema versions,
 * ids).  Included by nothing else.
 *
 * Owns nothing itself: the definitions those two files share. */
#ifndef HW_STORE_PG_INT_H
#define HW_STORE_PG_INT_H

#include "store_pg.h"
#include "store_int.h"

#include <libpq-fe.h>
#include <stdint.h>

enum { PG_DOWN, PG_CONNECTING, PG_IDLE, PG_BUSY };

/* How long the callers of a batch in limbo wait for the answer before
 * they get 503 all the same (the server may be gone for good) */
#define HW_PG_LIMBO_NS (10 * (uint64_t) 1000000000)

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700

struct hw_pg_s {
  char *url;
  char node[256];
  PGconn *wr, *rd;
  int state;
  uv_poll_t *poll;
  int pollfd;
  uv_timer_t *timer;
  int session;       /* node setting and prepared statements in place */
  int need_rollback; /* a failed batch left a transaction open */
  /* every batch also writes its token in store_meta ('commit:NODE'): when
   * the connection drops after a COMMIT was sent, the batch is in limbo
   * until the token, read after reconnecting, says whether it committed */
  int sent_all;      /* the batch's COMMIT and Sync are queued */
  int commit_item;   /* the pipeline item of its COMMIT */
  int committed;     /* COMMIT answered: whatever follows, it is stored */
  int limbo;
  int limbo_told;     /* its callers were answered 503 (HW_PG_LIMBO_NS) */
  int quick;          /* a reconnect at once was tried since the last commit */
  uint64_t connect_by; /* a connection attempt gives up then (libpq leaves
                        * connect_timeout to us with PQconnectPoll) */
  int no_fail_mark;   /* decide: a failed batch does not make the store fail */
  uint64_t limbo_since;
  uint64_t batchno;
  char token[64];
  int analyzed;       /* tx has statistics (see analyze_once) */
  uint64_t turn_at;   /* the last hw_pg__turn that looked */
  int flushing;      /* output not yet all sent */
  /* the batch in flight */
  hw_op_t *batch;
  hw_op_t **items; /* per pipeline item: its op, or NULL */
  int nitems, item;
  uint64_t lo, last;
  int got_new;
  int failed, retry;
  hw_op_t *bad;
  char msg[200];
  /* kept writes, the retry pause */
  hw_op_t *carry;
  size_t nkept;
  uint64_t pause, retry_at, failed_since, nfailed, last_log;
  unsigned oids[HW_STORE_MAXSTMTS][HW_OP_MAXV]; /* parameter types */
  int64_t id_next[HW_ID_KINDS], id_end[HW_ID_KINDS];
  int64_t id_spare[HW_ID_KINDS]; /* the first id of a block fetched ahead */
  uint64_t rd_reset_at;
  uint64_t started; /* uv_hrtime at open: part of the batch tokens */
  int opened; /* open completed: close commits what is left */
};

/* store_pg_read.c */
void hw_pg__quiet(void *arg, const char *msg);
void hw_pg__copy_msg(char *dst, size_t len, const char *prefix,
                     const char *msg);
PGconn *hw_pg__connect_sync(const char *url, char *err, size_t len);
int hw_pg__schema(PGconn *c, int migrate, char *what, size_t wlen, char *err,
                  size_t len);
int hw_pg__params(const hw_pg_t *pg, int id, const hw_val_t *v, int n,
                  int copy, const char **pv, char (*nb)[32], char **heap);
void hw_pg__free_heap(char **heap, int n);
int hw_pg__rd_setup(hw_pg_t *pg, char *err, size_t len);
int hw_pg__rd_ensure(hw_store_t *st);

#endif
