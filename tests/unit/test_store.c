/* Unit tests for the store: schema, writes through the writer thread,
 * flush callbacks after commit, reads, group commit and a clean close. */
#include "unit.h"
#include "store.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void mkdir_tmp(void) {
  strcpy(dir, "/tmp/hw-store-XXXXXX");
  if (mkdtemp(dir) == NULL)
    abort();
}

static void rm_tmp(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0)
    abort();
}

static hw_val_t t(const char *s) {
  hw_val_t v = {HW_V_TEXT, 0, 0, s, strlen(s)};
  return v;
}
static hw_val_t i(long long n) {
  hw_val_t v = {HW_V_INT, n, 0, NULL, 0};
  return v;
}
static hw_val_t r(double d) {
  hw_val_t v = {HW_V_REAL, 0, d, NULL, 0};
  return v;
}
static hw_val_t nil(void) {
  hw_val_t v = {HW_V_NULL, 0, 0, NULL, 0};
  return v;
}

static int flushed, flush_status;
static void on_flush(int status, const char *reason, void *arg) {
  (void) arg;
  (void) reason;
  flushed++;
  flush_status = status;
}

static int count_rows(int nc, const hw_val_t *c, const char *const *n,
                      void *arg) {
  (void) nc; (void) c; (void) n;
  (*(int *) arg)++;
  return 0;
}

static long long first_int;
static char first_text[256];
static int grab(int nc, const hw_val_t *c, const char *const *n, void *arg) {
  (void) n; (void) arg;
  if (nc > 0 && c[0].type == HW_V_INT)
    first_int = c[0].i;
  if (nc > 0 && c[0].type == HW_V_TEXT)
    snprintf(first_text, sizeof first_text, "%s", c[0].s);
  return 1;
}

static void insert_tx(hw_store_t *st, long long id, const char *cycle) {
  hw_val_t v[11] = {i(id), t(cycle), t("running"), t("in"), t("{\"a\":1}"),
                    r(1.5), r(1.5), i(1), nil(), nil(), t("{}")};
  hw_store_write(st, hw_store_stmt_id("tx_insert"), v, 11);
}

static void run_until_flushed(uv_loop_t *loop, int want) {
  while (flushed < want) {
    uv_run(loop, UV_RUN_ONCE);
  }
}

TEST(open_write_flush_read) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256];
  int n = 0;
  hw_val_t q;

  mkdir_tmp();
  uv_loop_init(&loop);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  insert_tx(st, 1, "orders");
  insert_tx(st, 2, "orders");
  flushed = 0;
  ASSERT_EQ(hw_store_flush(st, on_flush, NULL), 0);
  ASSERT_EQ(flushed, 0); /* never synchronously */
  hw_store_kick(st);
  run_until_flushed(&loop, 1);
  ASSERT_EQ(flush_status, 0);
  ASSERT_EQ(hw_store_pending(st), 0);
  ASSERT_EQ(hw_store_query(st, hw_store_stmt_id("tx_running"), NULL, 0,
                           count_rows, &n), 0);
  ASSERT_EQ(n, 2);
  q = i(2);
  ASSERT_EQ(hw_store_query(st, hw_store_stmt_id("tx_get_json"), &q, 1, grab,
                           NULL), 0);
  ASSERT_TRUE(strstr(first_text, "\"cycle\":\"orders\"") != NULL);
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

TEST(data_survives_reopen) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256];
  hw_val_t q[4];

  mkdir_tmp();
  uv_loop_init(&loop);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  insert_tx(st, 7, "c");
  hw_val_t park[7] = {i(7), t("status"), t("A1"), r(10.0), nil(),
                      t("{\"order_id\":\"A1\"}"), i(1)};
  hw_store_write(st, hw_store_stmt_id("tx_park"), park, 7);
  ASSERT_EQ(hw_store_close(st), 0); /* close commits what is queued */
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  q[0] = t("c"); q[1] = t("status"); q[2] = t("A1"); q[3] = r(11.0);
  first_int = 0;
  ASSERT_EQ(hw_store_query(st, hw_store_stmt_id("find_waiting"), q, 4, grab,
                           NULL), 0);
  ASSERT_EQ(first_int, 7);
  q[2] = t("B2");
  first_int = 0;
  hw_store_query(st, hw_store_stmt_id("find_waiting"), q, 4, grab, NULL);
  ASSERT_EQ(first_int, 0);
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

TEST(group_commit_many_flushes) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256];
  int k, n = 0;

  mkdir_tmp();
  uv_loop_init(&loop);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  flushed = 0;
  for (k = 1; k <= 500; k++) {
    insert_tx(st, k, "g");
    hw_store_flush(st, on_flush, NULL);
  }
  hw_store_kick(st);
  run_until_flushed(&loop, 500);
  ASSERT_EQ(flushed, 500);
  hw_store_query(st, hw_store_stmt_id("tx_running"), NULL, 0, count_rows, &n);
  ASSERT_EQ(n, 500);
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

TEST(bad_arguments_rejected) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256];
  hw_val_t v = i(1);

  mkdir_tmp();
  uv_loop_init(&loop);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  ASSERT_EQ(hw_store_stmt_id("no_such_statement"), -1);
  ASSERT_TRUE(hw_store_write(st, hw_store_stmt_id("find_waiting"), &v, 1) < 0);
  ASSERT_TRUE(hw_store_query(st, hw_store_stmt_id("tx_insert"), &v, 1,
                             count_rows, NULL) < 0);
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  ASSERT_TRUE(hw_store_open(&loop, "/nonexistent/dir", &st, err,
                            sizeof err) < 0);
  ASSERT_TRUE(strstr(err, "/nonexistent/dir") != NULL);
  rm_tmp();
}

/* --- failures: per batch, all or nothing, exact waiters ------------------ */

static int told[16], told_status[16];
static char told_reason[16][200];
static void on_told(int status, const char *reason, void *arg) {
  int k = (int) (intptr_t) arg;
  told[k]++;
  told_status[k] = status;
  snprintf(told_reason[k], sizeof told_reason[k], "%s", reason ? reason : "");
}

static uint64_t insert_req(hw_store_t *st, long long id) {
  hw_val_t v[11] = {i(id), t("c"), t("running"), t("in"), t("{}"),
                    r(1.5), r(1.5), i(1), nil(), nil(), t("{}")};
  uint64_t seq = 0;
  if (hw_store_write_req(st, hw_store_stmt_id("tx_insert"), v, 11, &seq) != 0)
    abort();
  return seq;
}

static int tx_exists(hw_store_t *st, long long id) {
  hw_val_t q = i(id);
  first_text[0] = '\0';
  hw_store_query(st, hw_store_stmt_id("tx_get_json"), &q, 1, grab, NULL);
  return first_text[0] != '\0';
}

/* Two batches fail before the loop hears of either: the waiters of both
 * are told (one failed range used to cover only the last). */
TEST(two_failed_batches_both_told) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256];
  uint64_t s[4];
  int k;

  mkdir_tmp();
  uv_loop_init(&loop);
  memset(told, 0, sizeof told);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  s[0] = insert_req(st, 1);
  s[1] = insert_req(st, 1); /* duplicate id: the batch fails */
  hw_store_seal(st);
  s[2] = insert_req(st, 2);
  s[3] = insert_req(st, 2);
  hw_store_seal(st);
  for (k = 0; k < 4; k++)
    ASSERT_EQ(hw_store_await(st, s[k], on_told, (void *) (intptr_t) k), 0);
  ASSERT_EQ(told[0], 0); /* never synchronously */
  ASSERT_EQ(hw_store_settle(st, 10000), 0); /* both batches decided */
  for (k = 0; k < 4; k++) {
    ASSERT_EQ(told[k], 1);
    ASSERT_TRUE(told_status[k] < 0);
    ASSERT_TRUE(strstr(told_reason[k], "UNIQUE") != NULL);
  }
  ASSERT_TRUE(!tx_exists(st, 1));
  ASSERT_TRUE(!tx_exists(st, 2));
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

/* One failing statement fails its whole batch: the request written with it
 * is refused and not stored; the writes nobody waits for are kept and
 * committed by the next batch; the failing statement alone is dropped. */
TEST(batch_all_or_nothing) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256];
  uint64_t req;

  mkdir_tmp();
  uv_loop_init(&loop);
  memset(told, 0, sizeof told);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  insert_tx(st, 5, "kept");           /* kept: nobody waits */
  req = insert_req(st, 6);            /* a request's write */
  insert_tx(st, 5, "dup");            /* fails on its own data */
  ASSERT_EQ(hw_store_await(st, req, on_told, (void *) (intptr_t) 0), 0);
  ASSERT_EQ(hw_store_flush(st, on_told, (void *) (intptr_t) 1), 0);
  hw_store_kick(st);
  while (told[1] == 0)
    uv_run(&loop, UV_RUN_ONCE);
  ASSERT_EQ(told[0], 1);
  ASSERT_TRUE(told_status[0] < 0);
  ASSERT_EQ(told_status[1], 0);   /* the kept write is durable */
  ASSERT_TRUE(tx_exists(st, 5));
  ASSERT_TRUE(strstr(first_text, "\"cycle\":\"kept\"") != NULL);
  ASSERT_TRUE(!tx_exists(st, 6)); /* refused, so not stored */
  /* the store works on: the next request commits */
  req = insert_req(st, 7);
  ASSERT_EQ(hw_store_await(st, req, on_told, (void *) (intptr_t) 2), 0);
  hw_store_kick(st);
  while (told[2] == 0)
    uv_run(&loop, UV_RUN_ONCE);
  ASSERT_EQ(told_status[2], 0);
  ASSERT_TRUE(tx_exists(st, 7));
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

/* Values are checked against each statement's declared count. */
TEST(value_count_checked) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256];
  hw_val_t v[12];
  int k;

  for (k = 0; k < 12; k++)
    v[k] = i(k);
  mkdir_tmp();
  uv_loop_init(&loop);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  ASSERT_EQ(hw_store_stmt_nparams(hw_store_stmt_id("tx_insert")), 11);
  ASSERT_EQ(hw_store_stmt_nparams(hw_store_stmt_id("job_delete")), 1);
  ASSERT_EQ(hw_store_stmt_nparams(-1), -1);
  ASSERT_EQ(hw_store_write(st, hw_store_stmt_id("tx_insert"), v, 10), -EINVAL);
  ASSERT_EQ(hw_store_write(st, hw_store_stmt_id("tx_insert"), v, 12), -EINVAL);
  ASSERT_EQ(hw_store_write(st, hw_store_stmt_id("job_delete"), v, 0), -EINVAL);
  ASSERT_EQ(hw_store_write(st, hw_store_stmt_id("job_delete"), v, 1), 0);
  ASSERT_EQ(hw_store_query(st, hw_store_stmt_id("tx_get_json"), v, 2,
                           count_rows, NULL), -EINVAL);
  ASSERT_TRUE(strstr(hw_store_errmsg(st), "takes 1 values, got 2") != NULL);
  ASSERT_EQ(hw_store_pending(st), 1);
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

/* One engine per store: a second open of the same directory is refused,
 * naming the holder; after close it opens again. */
TEST(directory_locked) {
  uv_loop_t loop;
  hw_store_t *st, *st2 = NULL;
  char err[256], want[128];

  mkdir_tmp();
  uv_loop_init(&loop);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  ASSERT_EQ(hw_store_open(&loop, dir, &st2, err, sizeof err), -EBUSY);
  snprintf(want, sizeof want, "%s is in use by another engine (pid %ld)", dir,
           (long) getpid());
  ASSERT_STREQ(err, want);
  ASSERT_EQ(hw_store_close(st), 0);
  ASSERT_EQ(hw_store_open(&loop, dir, &st2, err, sizeof err), 0);
  ASSERT_EQ(hw_store_close(st2), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

/* Back-pressure: past HOOKWORK_MAX_PENDING uncommitted writes the store
 * asks for new requests to be refused, and takes them again once they
 * commit. */
TEST(back_pressure) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256], why[256];
  int k;

  mkdir_tmp();
  uv_loop_init(&loop);
  setenv("HOOKWORK_MAX_PENDING", "3", 1);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  unsetenv("HOOKWORK_MAX_PENDING");
  ASSERT_EQ(hw_store_refusal(st, why, sizeof why), 0);
  for (k = 1; k <= 2; k++)
    insert_tx(st, k, "bp");
  ASSERT_EQ(hw_store_refusal(st, why, sizeof why), 0);
  insert_tx(st, 3, "bp");
  ASSERT_EQ(hw_store_refusal(st, why, sizeof why), 1);
  ASSERT_STREQ(why, "too many writes waiting to be committed (3)");
  flushed = 0;
  hw_store_flush(st, on_flush, NULL);
  hw_store_kick(st);
  run_until_flushed(&loop, 1);
  ASSERT_EQ(hw_store_refusal(st, why, sizeof why), 0);
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

/* A store that fails half-way through opening (a damaged file) closes only
 * what it opened, says why, and leaves the directory unlocked. */
TEST(failed_open_cleans_up) {
  uv_loop_t loop;
  hw_store_t *st = NULL;
  char err[256], path[128];
  FILE *f;

  mkdir_tmp();
  uv_loop_init(&loop);
  snprintf(path, sizeof path, "%s/hookwork.db", dir);
  f = fopen(path, "w");
  ASSERT_TRUE(f != NULL);
  fputs("this is not a database, just some text long enough to be read", f);
  fclose(f);
  ASSERT_TRUE(hw_store_open(&loop, dir, &st, err, sizeof err) < 0);
  ASSERT_TRUE(st == NULL);
  ASSERT_TRUE(strstr(err, "not a database") != NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  remove(path);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0); /* unlocked */
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

/* Under a steady stream of commits, with reads between them, the WAL
 * stays near HOOKWORK_WAL_LIMIT_MB: the writer never checkpoints on its
 * own, and the WAL starts over only when a write begins with every frame
 * copied, which the checkpointer alone cannot bring about while commits
 * follow each other (it needs the writer's short finishing pass). */
TEST(wal_stays_bounded) {
  uv_loop_t loop;
  hw_store_t *st;
  char err[256], path[128], big[3001];
  struct stat sb;
  int k, want = 0, n = 0;
  hw_val_t q;

  mkdir_tmp();
  uv_loop_init(&loop);
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  setenv("HOOKWORK_WAL_LIMIT_MB", "1", 1);
  ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), 0);
  unsetenv("HOOKWORK_WAL_LIMIT_MB");
  flushed = 0;
  for (k = 1; k <= 6000; k++) {
    hw_val_t v[11] = {i(k), t("w"), t("running"), t("in"), t(big), r(1.5),
                      r(1.5), i(1), nil(), nil(), t("{}")};
    ASSERT_EQ(hw_store_write(st, hw_store_stmt_id("tx_insert"), v, 11), 0);
    if (k % 20 != 0)
      continue;
    ASSERT_EQ(hw_store_flush(st, on_flush, NULL), 0);
    want++;
    hw_store_kick(st);
    q = i(k / 2);
    ASSERT_EQ(hw_store_query(st, hw_store_stmt_id("tx_data"), &q, 1, grab,
                             NULL), 0);
    /* a few commits queued at any time: the writer never idles */
    if (want - flushed > 3)
      run_until_flushed(&loop, want - 3);
  }
  run_until_flushed(&loop, want);
  ASSERT_EQ(flush_status, 0);
  snprintf(path, sizeof path, "%s/hookwork.db-wal", dir);
  ASSERT_EQ(stat(path, &sb), 0);
  /* 6000 rows of 3 KB went through it: about 24 MB if it never restarted */
  ASSERT_TRUE(sb.st_size < 6 * 1024 * 1024);
  hw_store_query(st, hw_store_stmt_id("tx_running"), NULL, 0, count_rows, &n);
  ASSERT_EQ(n, 6000);
  ASSERT_EQ(hw_store_close(st), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

/* A bad HOOKWORK_WAL_LIMIT_MB is named and nothing is created. */
TEST(bad_wal_limit_refused) {
  uv_loop_t loop;
  hw_store_t *st = NULL;
  char err[256], path[128];
  const char *bad[] = {"0", "-3", "64MB", "", "99999"};
  size_t k;

  mkdir_tmp();
  uv_loop_init(&loop);
  for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    setenv("HOOKWORK_WAL_LIMIT_MB", bad[k], 1);
    err[0] = '\0';
    ASSERT_EQ(hw_store_open(&loop, dir, &st, err, sizeof err), -EINVAL);
    ASSERT_TRUE(st == NULL);
    ASSERT_TRUE(strstr(err, "HOOKWORK_WAL_LIMIT_MB must be a whole number")
                != NULL);
  }
  unsetenv("HOOKWORK_WAL_LIMIT_MB");
  snprintf(path, sizeof path, "%s/hookwork.db", dir);
  ASSERT_TRUE(access(path, F_OK) != 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(uv_loop_close(&loop), 0);
  rm_tmp();
}

RUN_TESTS("store", T(failed_open_cleans_up), T(wal_stays_bounded), T(bad_wal_limit_refused), T(open_write_flush_read), T(data_survives_reopen),
          T(group_commit_many_flushes), T(bad_arguments_rejected),
          T(two_failed_batches_both_told), T(batch_all_or_nothing),
          T(value_count_checked), T(directory_locked), T(back_pressure))
