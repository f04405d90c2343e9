/* Unit tests for the store: schema, writes through the writer thread,
 * flush callbacks after commit, reads, group commit and a clean close. */
#include "unit.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>
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
static void on_flush(int status, void *arg) {
  (void) arg;
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

RUN_TESTS("store", T(open_write_flush_read), T(data_survives_reopen),
          T(group_commit_many_flushes), T(bad_arguments_rejected))
