/* watcher: debounced "a *.lua file in this directory changed" on the libuv
 * loop.  See watcher.h for the contract.
 *
 * Owns: hw_watcher_t with three embedded handles (fs_event, fs_poll, timer);
 * the struct is freed in the close callback of the last of them.
 * Uses: libuv only.
 *
 * Why three handles:
 *  - uv_fs_event watches the directory, not the files, so an editor that
 *    writes "x.lua.tmp" and renames it over "x.lua" (vim, most IDEs, atomic
 *    deploys) shows up as an event named "x.lua" instead of silently leaving
 *    a watch on a deleted inode.
 *  - An inotify watch dies with the directory's inode: if the directory is
 *    deleted, moved away or replaced, no more events come.  uv_fs_poll stats
 *    the path once a second; when the path comes back or names a different
 *    inode, the fs_event is restarted on it.
 *  - The timer debounces: every relevant event (re)starts it, and cb runs
 *    once when it fires, so one save (create + modify + rename) or a whole
 *    "git checkout" costs one rescan.
 */
#include "watcher.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define POLL_MS 1000  /* how soon a replaced directory is noticed */

struct hw_watcher_s {
  uv_fs_event_t event;
  uv_fs_poll_t poll;
  uv_timer_t timer;       /* debounce */
  hw_watcher_cb cb;
  void *arg;
  unsigned debounce_ms;
  int watching;           /* event is started on the current directory */
  int rewatch;            /* restart event before the next cb */
  int closing;            /* handles whose close callback is still due */
  const char *self;       /* name libuv reports for events on dir itself */
  char dir[];             /* our copy of the path */
};

static void on_event(uv_fs_event_t *h, const char *name, int events,
                     int status);

static void on_closed(uv_handle_t *h) {
  hw_watcher_t *w = h->data;

  if (--w->closing == 0)
    free(w);
}

void hw_watcher_close(hw_watcher_t *w) {
  if (w == NULL || w->closing)
    return;
  w->closing = 3;
  uv_close((uv_handle_t *) &w->event, on_closed);
  uv_close((uv_handle_t *) &w->poll, on_closed);
  uv_close((uv_handle_t *) &w->timer, on_closed);   /* no cb after this */
}

/* Re-points the fs_event at whatever the path names now.  On failure (the
 * directory is gone) watching stays 0 and on_poll retries when the path
 * changes again.  Events lost between stop and start do not matter: the
 * caller rescans right after this, in on_timer. */
static void rewatch(hw_watcher_t *w) {
  w->rewatch = 0;
  if (w->watching)
    uv_fs_event_stop(&w->event);
  w->watching = uv_fs_event_start(&w->event, on_event, w->dir, 0) == 0;
}

static void on_timer(uv_timer_t *t) {
  hw_watcher_t *w = t->data;

  if (w->rewatch)
    rewatch(w);
  w->cb(w->arg);                        /* last: cb may close w */
}

/* (Re)starts the debounce timer: cb runs debounce_ms after the last event. */
static void arm(hw_watcher_t *w) {
  if (w->closing)
    return;
  uv_timer_start(&w->timer, on_timer, w->debounce_ms, 0); /* can't fail here */
}

static int is_lua(const char *name) {
  size_t n = strlen(name);

  return n >= 4 && strcmp(name + n - 4, ".lua") == 0;
}

/* On Linux, events about the watched directory itself (deleted, moved,
 * attributes) carry the directory's basename instead of a file name. */
static void on_event(uv_fs_event_t *h, const char *name, int events,
                     int status) {
  hw_watcher_t *w = h->data;

  if (status < 0 || (name != NULL && strcmp(name, w->self) == 0)) {
    w->rewatch = 1;
    arm(w);
  } else if (name == NULL || is_lua(name)) {
    arm(w);
  }
}

/* Only identity changes matter here; plain mtime changes of the directory
 * are file additions and removals, which the fs_event already reported. */
static void on_poll(uv_fs_poll_t *h, int status, const uv_stat_t *prev,
                    const uv_stat_t *curr) {
  hw_watcher_t *w = h->data;

  if (status < 0 || !w->watching || prev->st_ino != curr->st_ino ||
      prev->st_dev != curr->st_dev) {
    w->rewatch = 1;
    arm(w);
  }
}

/* Checked before any handle exists, so the common failures (typo in the
 * path, a file instead of a directory) leave nothing on the loop. */
static int check_dir(uv_loop_t *loop, const char *dir) {
  uv_fs_t req;
  int rc = uv_fs_stat(loop, &req, dir, NULL);  /* synchronous: no cb */

  if (rc == 0 && !S_ISDIR(req.statbuf.st_mode))
    rc = UV_ENOTDIR;
  uv_fs_req_cleanup(&req);
  return rc;
}

/* The name libuv gives self-events: the text after the last '/'. */
static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');

  return s ? s + 1 : path;
}

int hw_watcher_start(uv_loop_t *loop, const char *dir, unsigned debounce_ms,
                     hw_watcher_cb cb, void *arg, hw_watcher_t **out) {
  hw_watcher_t *w;
  size_t len;
  int rc;

  assert(loop != NULL && dir != NULL && cb != NULL && out != NULL);
  *out = NULL;
  rc = check_dir(loop, dir);
  if (rc < 0)
    return rc;
  len = strlen(dir) + 1;
  w = calloc(1, sizeof *w + len);
  if (w == NULL)
    return UV_ENOMEM;
  memcpy(w->dir, dir, len);
  w->self = base_name(w->dir);
  w->cb = cb;
  w->arg = arg;
  w->debounce_ms = debounce_ms;
  /* The three inits only link the handle into the loop; they cannot fail
   * on unix. */
  uv_fs_event_init(loop, &w->event);
  uv_fs_poll_init(loop, &w->poll);
  uv_timer_init(loop, &w->timer);
  w->event.data = w->poll.data = w->timer.data = w;
  rc = uv_fs_event_start(&w->event, on_event, w->dir, 0);
  if (rc == 0) {
    w->watching = 1;
    rc = uv_fs_poll_start(&w->poll, on_poll, w->dir, POLL_MS);
  }
  if (rc < 0) {
    hw_watcher_close(w);                /* freed in on_closed */
    return rc;
  }
  *out = w;
  return 0;
}
