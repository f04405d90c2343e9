/* loopstat: how long the loop thread works in each iteration, without the
 * time it sleeps in poll, as a histogram (/metrics,
 * hookwork_loop_iteration_seconds).  A long iteration delays every
 * connection and commit that waits behind it, so this is where latency at
 * load starts to show (docs/BENCHMARKS.md).
 *
 * Owns: the counters (inside the engine struct).  Uses: libuv's idle-time
 * metric (UV_METRICS_IDLE_TIME) and the thread's CPU clock, read once per
 * iteration from the engine's prepare handle. */
#ifndef HW_LOOPSTAT_H
#define HW_LOOPSTAT_H

#include <stdint.h>
#include <uv.h>

#define HW_LOOPSTAT_NB 12

typedef struct hw_loopstat_s {
  uint64_t last_t, last_idle;      /* hrtime and idle time at the last tick */
  uint64_t n;                      /* iterations measured */
  uint64_t busy_ns;                /* their work, summed */
  uint64_t max_ns;                 /* the longest */
  uint64_t bucket[HW_LOOPSTAT_NB]; /* iterations up to hw_loopstat_le[i] (not cumulative) */
  uint64_t over;                   /* longer than the last bound */
  /* the same in CPU time of the loop thread: an iteration long in wall
   * time but short in CPU was waiting for a CPU (another thread or
   * process ran), not working */
  uint64_t last_cpu;
  uint64_t cpu_ns, cpu_max_ns;
  uint64_t cpu_bucket[HW_LOOPSTAT_NB];
} hw_loopstat_t;

/* Upper bounds of the buckets, in seconds. */
extern const double hw_loopstat_le[HW_LOOPSTAT_NB];

/* Turns libuv's idle-time accounting on (before the loop runs). 0 or a
 * negative libuv error. */
int hw_loopstat_init(hw_loopstat_t *s, uv_loop_t *loop);
/* Once per iteration, before poll: the work since the last call. */
void hw_loopstat_tick(hw_loopstat_t *s, uv_loop_t *loop);

#endif
