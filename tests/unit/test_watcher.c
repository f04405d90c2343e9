/* test_watcher: core/watcher on a real loop and a temporary directory.
 * Each test drives the loop itself (run_until) between file operations and
 * ends by closing everything and checking uv_loop_close() == 0. */
#include "watcher.h"
#include "unit.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEBOUNCE_MS 50

typedef struct {
  uv_loop_t loop;
  uv_timer_t deadline;   /* wakes run_until when nothing else happens */
  hw_watcher_t *w;
  char dir[64];
  int fired;             /* watcher callbacks so far */
  int timed_out;
  int close_in_cb;       /* close the watcher from its own callback */
} fx_t;

static void on_change(void *arg) {
  fx_t *fx = arg;

  fx->fired++;
  if (fx->close_in_cb) {
    hw_watcher_close(fx->w);
    fx->w = NULL;
  }
}

static void on_deadline(uv_timer_t *t) {
  ((fx_t *) t->data)->timed_out = 1;
}

/* Runs the loop until fired reaches want (want < 0: never) or ms pass. */
static void run_until(fx_t *fx, int want, unsigned ms) {
  fx->timed_out = 0;
  uv_timer_start(&fx->deadline, on_deadline, ms, 0);
  while (!fx->timed_out && (want < 0 || fx->fired < want))
    uv_run(&fx->loop, UV_RUN_ONCE);
  uv_timer_stop(&fx->deadline);
}

static int put(fx_t *fx, const char *name, const char *text) {
  char path[128];
  FILE *f;

  snprintf(path, sizeof path, "%s/%s", fx->dir, name);
  f = fopen(path, "w");
  if (f == NULL)
    return -1;
  fputs(text, f);
  return fclose(f);
}

static int in_dir(fx_t *fx, int (*op)(const char *), const char *name) {
  char path[128];

  snprintf(path, sizeof path, "%s/%s", fx->dir, name);
  return op(path);
}

static int mv(fx_t *fx, const char *from, const char *to) {
  char a[128], b[128];

  snprintf(a, sizeof a, "%s/%s", fx->dir, from);
  snprintf(b, sizeof b, "%s/%s", fx->dir, to);
  return rename(a, b);
}

static void rm_tree(const char *dir) {
  char path[512];
  struct dirent *d;
  DIR *dp = opendir(dir);

  while (dp != NULL && (d = readdir(dp)) != NULL) {
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, d->d_name);
    unlink(path);
  }
  if (dp != NULL)
    closedir(dp);
  rmdir(dir);
}

static int setup(fx_t *fx) {
  memset(fx, 0, sizeof *fx);
  strcpy(fx->dir, "/tmp/hw_watch_XXXXXX");
  if (mkdtemp(fx->dir) == NULL || uv_loop_init(&fx->loop) != 0)
    return -1;
  uv_timer_init(&fx->loop, &fx->deadline);
  fx->deadline.data = fx;
  return hw_watcher_start(&fx->loop, fx->dir, DEBOUNCE_MS, on_change, fx,
                          &fx->w);
}

/* Closes everything and returns uv_loop_close()'s result. */
static int teardown(fx_t *fx) {
  hw_watcher_close(fx->w);
  uv_close((uv_handle_t *) &fx->deadline, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  rm_tree(fx->dir);
  return uv_loop_close(&fx->loop);
}

/* Write, rename-save (as vim and most editors do), delete: one cb each. */
static void write_rename_delete(fx_t *fx) {
  ASSERT_EQ(put(fx, "a.lua", "return 1\n"), 0);
  run_until(fx, 1, 1000);
  ASSERT_EQ(fx->fired, 1);
  run_until(fx, -1, 3 * DEBOUNCE_MS);   /* a burst is a single cb */
  ASSERT_EQ(fx->fired, 1);
  ASSERT_EQ(put(fx, "a.lua.tmp", "return 2\n"), 0);
  ASSERT_EQ(mv(fx, "a.lua.tmp", "a.lua"), 0);
  run_until(fx, 2, 1000);
  ASSERT_EQ(fx->fired, 2);
  ASSERT_EQ(in_dir(fx, unlink, "a.lua"), 0);
  run_until(fx, 3, 1000);
  ASSERT_EQ(fx->fired, 3);
  run_until(fx, -1, 3 * DEBOUNCE_MS);
  ASSERT_EQ(fx->fired, 3);
}

TEST(write_rename_delete_fires) {
  fx_t fx;

  ASSERT_EQ(setup(&fx), 0);
  write_rename_delete(&fx);
  ASSERT_EQ(teardown(&fx), 0);
}

static void non_lua(fx_t *fx) {
  ASSERT_EQ(put(fx, "notes.txt", "x"), 0);
  ASSERT_EQ(put(fx, "b.lua.swp", "x"), 0);
  run_until(fx, -1, 4 * DEBOUNCE_MS);
  ASSERT_EQ(fx->fired, 0);
  ASSERT_EQ(put(fx, "b.lua", "x"), 0);
  run_until(fx, 1, 1000);
  ASSERT_EQ(fx->fired, 1);
}

TEST(ignores_non_lua) {
  fx_t fx;

  ASSERT_EQ(setup(&fx), 0);
  non_lua(&fx);
  ASSERT_EQ(teardown(&fx), 0);
}

/* The directory is removed and made again: the inotify watch died with the
 * old inode, so this only passes if the poll fallback re-arms it. */
static void replaced(fx_t *fx) {
  int n;

  ASSERT_EQ(put(fx, "a.lua", "x"), 0);
  run_until(fx, 1, 1000);
  ASSERT_EQ(in_dir(fx, unlink, "a.lua"), 0);
  ASSERT_EQ(rmdir(fx->dir), 0);
  run_until(fx, -1, 200);
  ASSERT_EQ(mkdir(fx->dir, 0700), 0);
  n = fx->fired;
  ASSERT_EQ(put(fx, "b.lua", "x"), 0);
  run_until(fx, n + 1, 2500);           /* poll period is 1 s */
  ASSERT_TRUE(fx->fired > n);
  run_until(fx, -1, 200);
  n = fx->fired;
  ASSERT_EQ(put(fx, "c.lua", "x"), 0);  /* now via the new fs_event */
  run_until(fx, n + 1, 500);
  ASSERT_EQ(fx->fired, n + 1);
}

TEST(survives_dir_replaced) {
  fx_t fx;

  ASSERT_EQ(setup(&fx), 0);
  replaced(&fx);
  ASSERT_EQ(teardown(&fx), 0);
}

TEST(close_from_cb) {
  fx_t fx;

  ASSERT_EQ(setup(&fx), 0);
  fx.close_in_cb = 1;
  ASSERT_EQ(put(&fx, "a.lua", "x"), 0);
  run_until(&fx, 1, 1000);
  ASSERT_EQ(put(&fx, "b.lua", "x"), 0);  /* closed: must not fire */
  run_until(&fx, -1, 3 * DEBOUNCE_MS);
  ASSERT_EQ(teardown(&fx), 0);
  ASSERT_EQ(fx.fired, 1);
}

TEST(bad_dir) {
  uv_loop_t loop;
  hw_watcher_t *w = (hw_watcher_t *) &loop;

  ASSERT_EQ(uv_loop_init(&loop), 0);
  ASSERT_EQ(hw_watcher_start(&loop, "/nonexistent/hw", 10, on_change, NULL,
                             &w), UV_ENOENT);
  ASSERT_TRUE(w == NULL);
  ASSERT_EQ(hw_watcher_start(&loop, "/dev/null", 10, on_change, NULL,
                             &w), UV_ENOTDIR);
  ASSERT_EQ(uv_loop_close(&loop), 0);   /* nothing was left on the loop */
}

RUN_TESTS("watcher", T(write_rename_delete_fires), T(ignores_non_lua),
          T(survives_dir_replaced), T(close_from_cb), T(bad_dir))
