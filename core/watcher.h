/* watcher: tells the engine "a *.lua file in this directory may have
 * changed, rescan it", debounced, on the one libuv loop.
 *
 * Owns: a uv_fs_event_t on the directory itself (not on each file, so saves
 * that write a temporary file and rename it over the original keep being
 * seen), a uv_fs_poll_t on the directory that notices it being deleted,
 * replaced or recreated and re-arms the fs_event, and the debounce timer.
 * The watcher does not say which file changed: the caller rescans the
 * directory and compares what it finds.
 */
#ifndef HW_WATCHER_H
#define HW_WATCHER_H

#include <uv.h>

typedef struct hw_watcher_s hw_watcher_t;

/* "Something changed in the directory; rescan."  Called on the loop, never
 * from inside hw_watcher_start, once per burst of events (debounce_ms after
 * the last one).  It may call hw_watcher_close. */
typedef void (*hw_watcher_cb)(void *arg);

/* Starts watching dir (copied) for changes to files whose names end in
 * ".lua".  cb(arg) runs after each quiet period of debounce_ms following one
 * or more such changes, any number of times, until hw_watcher_close.
 * Returns 0 and *out, or a negative UV_E* code (UV_ENOENT, UV_ENOTDIR,
 * UV_ENOMEM, inotify limits as UV_ENOSPC, ...) with *out = NULL and cb never
 * called.  A failure before any handle exists leaves the loop untouched; a
 * later one closes the handles, so run the loop once before uv_loop_close. */
int hw_watcher_start(uv_loop_t *loop, const char *dir, unsigned debounce_ms,
                     hw_watcher_cb cb, void *arg, hw_watcher_t **out);

/* Stops watching: cb is not called again.  Closes the handles; the memory is
 * freed in the last close callback, so w must not be used after this call.
 * NULL is a no-op. */
void hw_watcher_close(hw_watcher_t *w);

#endif
