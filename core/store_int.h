/* store_int: the store's private parts, shared by store.c (the loop-thread
 * side: open, queue, waiters, reads, close) and store_writer.c (the writer
 * and checkpointer threads).  Included by nothing else.
 *
 * Owns nothing itself: the definitions of what those two files share. */
#ifndef HW_STORE_INT_H
#define HW_STORE_INT_H

#include "store.h"

#include <sqlite3.h>
#include <stdint.h>

#define HW_STORE_MAXSTMTS 96 /* store.c checks HW_NSTMTS fits */
#define HW_OP_MAXV 12
#define HW_FAIL_KEEP_NS (60 * (uint64_t) 1000000000) /* failed ranges kept */
#define HW_RETRY_MIN_NS (100 * (uint64_t) 1000000)
#define HW_RETRY_MAX_NS (1000 * (uint64_t) 1000000)
#define HW_MAX_PENDING_DEFAULT 100000
#define HW_WAL_STEP 256 /* frames committed between checkpointer wake-ups */
#define HW_WAL_LIMIT_MB 64 /* HOOKWORK_WAL_LIMIT_MB's default */

typedef struct hw_op_s {
  struct hw_op_s *next;
  uint64_t seq;
  int id;
  int n;
  int req; /* a request's write: dropped when its batch fails */
  hw_val_t v[HW_OP_MAXV];
  char *buf; /* one allocation holding every text value */
} hw_op_t;

typedef struct hw_waiter_s {
  struct hw_waiter_s *next;
  uint64_t seq; /* the write waited for (awaiters) */
  uint64_t thr; /* told once the writer's mark reaches it */
  hw_store_cb cb;
  void *arg;
} hw_waiter_t;

/* A failed batch: request writes with seq in (lo, hi] were dropped. */
typedef struct hw_fail_s {
  struct hw_fail_s *next;
  uint64_t lo, hi;
  uint64_t at; /* uv_hrtime when the loop learned of it */
  char msg[200];
} hw_fail_t;

/* A second's worth of commit and checkpoint timings (HOOKWORK_STORE_TRACE). */
#define HW_TRACE_BUCKETS 16 /* commit durations: <1ms, <2ms, <4ms ... */
typedef struct hw_store_trace_s {
  uint64_t since;
  unsigned commits, ops, frames, hist[HW_TRACE_BUCKETS];
  uint64_t commit_max_ns, commit_sum_ns;
  unsigned ckpts;                /* the checkpointer's passes */
  uint64_t ck_max_ns, ck_sum_ns;
  unsigned wck;                  /* the writer's own (finishing) passes */
  uint64_t wck_max_ns;
  unsigned restarts;             /* the WAL started over */
  int wal_max;                   /* most frames in the WAL */
} hw_store_trace_t;

struct hw_store_s {
  uv_loop_t *loop;
  sqlite3 *wr, *rd;
  sqlite3_stmt *wstmt[HW_STORE_MAXSTMTS];
  sqlite3_stmt *rstmt[HW_STORE_MAXSTMTS];
  int lockfd;
  size_t max_pending;
  /* loop thread only */
  hw_op_t *head, **tail;       /* written this iteration, not yet sealed */
  hw_waiter_t *ahead, **atail; /* awaiters, by thr */
  hw_waiter_t *fhead, **ftail; /* flushers, by thr */
  uint64_t alast, flast;       /* thr of the newest awaiter / flusher */
  uint64_t seq;                /* last op written */
  uint64_t sealed;             /* last op handed to the writer */
  hw_fail_t *fails;            /* failed ranges the loop knows, oldest first */
  uv_async_t *async;           /* writer -> loop: a batch was decided */
  uv_timer_t *linger;          /* seals writes nobody waits for */
  size_t unsealed;             /* ops written since the last seal */
  char errmsg[256];            /* last query error */
  int64_t ids[HW_ID_KINDS];    /* last id handed out, per kind */
  /* shared, under mu */
  uv_mutex_t mu;
  uv_cond_t cv;                /* wakes the writer */
  uv_cond_t donecv;            /* a batch was decided (settle waits) */
  hw_op_t *shead, **stail;     /* sealed, waiting for the writer */
  uint64_t shead_last;         /* seq of the last sealed op */
  uint64_t done;               /* ops up to here decided */
  uint64_t durable;            /* every kept op up to here is committed */
  size_t ncarry;               /* ops kept for retry */
  hw_fail_t *newfails, **newfails_tail; /* writer -> loop */
  int failing;                 /* the last batch failed on the disk */
  char reason[200];            /* why, while failing */
  int stop;
  /* writer thread only */
  uv_thread_t thread;
  int thread_started;
  char wmsg[200];              /* the writer's own message buffer */
  /* checkpointer thread: copies the WAL into the database file with its
   * own connection, woken by the writer every HW_WAL_STEP frames (and at
   * least four times a second).  PASSIVE: it never blocks the writer, and
   * the writer never checkpoints on its own (wal_autocheckpoint is off), so
   * a commit never waits for pages to be copied or the database file to be
   * synced.  The WAL starts over from its beginning only when a write
   * transaction begins with every frame copied; under steady load that
   * never happens by itself, so once the WAL passes wal_limit frames and
   * a pass has copied all it saw, the checkpointer asks the writer (ck_ask)
   * to copy the last few frames itself between two batches, after the
   * earlier batch's waiters were told. */
  sqlite3 *ck;
  uv_cond_t ckcv;              /* wakes the checkpointer (more frames, stop) */
  uv_thread_t ckthread;
  int ck_started;
  /* the PostgreSQL backend (store_pg.c), NULL on SQLite: then no SQLite
   * connection, lock or thread exists, and the batch machine of store_pg.c
   * takes sealed writes on the loop thread instead of the writer */
  struct hw_pg_s *pg;
  int ck_due;                  /* the writer asks for a pass */
  int ck_ask;                  /* the checkpointer asks the writer to finish */
  int ck_asked;                /* the writer finishes (it clears it after) */
  int wal_frames;              /* frames in the WAL after the last commit */
  int wal_woke;                /* wal_frames when the writer last woke it */
  int wal_limit;               /* frames (HOOKWORK_WAL_LIMIT_MB) */
  int wal_step;                /* frames between wake-ups */
  /* HOOKWORK_STORE_TRACE=1: once a second the writer logs its commits
   * (count, ops, duration histogram), the checkpoints and the WAL, to find
   * where a write waits.  Under mu (both threads add). */
  int trace;
  hw_store_trace_t tr;
};

/* store_writer.c */
void hw_store__writer_main(void *arg);
void hw_store__checkpointer_main(void *arg);
void hw_store__free_ops(hw_op_t *op);
/* After a failed batch: request writes and the bad op go, the others stay
 * (in order) for the next batch (both backends).  Returns the kept list. */
hw_op_t *hw_store__keep_ops(hw_op_t *ops, hw_op_t *bad, size_t *nkept);
/* store.c */
int hw_store__bind(sqlite3_stmt *s, const hw_val_t *v, int n);
const char *hw_store__stmt_name(int id);
/* tells the waiters whose writes were decided (final: at close) */
void hw_store__notify(hw_store_t *st, int final);

#endif
