/* loopstat: the loop thread's work per iteration (see loopstat.h). */
#include "loopstat.h"

#include <string.h>
#include <time.h>

static uint64_t thread_cpu_ns(void) {
  struct timespec t;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t) != 0)
    return 0;
  return (uint64_t) t.tv_sec * 1000000000u + (uint64_t) t.tv_nsec;
}

static void count(uint64_t *bucket, uint64_t ns) {
  int i;
  for (i = 0; i < HW_LOOPSTAT_NB && (double) ns > hw_loopstat_le[i] * 1e9; i++)
    ;
  if (i < HW_LOOPSTAT_NB)
    bucket[i]++;
}

const double hw_loopstat_le[HW_LOOPSTAT_NB] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   1};

int hw_loopstat_init(hw_loopstat_t *s, uv_loop_t *loop) {
  memset(s, 0, sizeof *s);
  return uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
}

/* Called from the prepare handle, which runs once per iteration just
 * before poll: the time since the last call, less what poll slept, is the
 * work of one iteration (timers, I/O callbacks, the check handle's runs). */
void hw_loopstat_tick(hw_loopstat_t *s, uv_loop_t *loop) {
  uint64_t t = uv_hrtime(), idle = uv_metrics_idle_time(loop), cpu = thread_cpu_ns(), busy, used;
  if (s->last_t != 0) {
    busy = (t - s->last_t) - (idle - s->last_idle);
    if (idle - s->last_idle > t - s->last_t) /* clock granularity */
      busy = 0;
    used = cpu >= s->last_cpu ? cpu - s->last_cpu : 0;
    s->n++;
    s->busy_ns += busy;
    if (busy > s->max_ns)
      s->max_ns = busy;
    if ((double) busy > hw_loopstat_le[HW_LOOPSTAT_NB - 1] * 1e9)
      s->over++;
    count(s->bucket, busy);
    s->cpu_ns += used;
    if (used > s->cpu_max_ns)
      s->cpu_max_ns = used;
    count(s->cpu_bucket, used);
  }
  s->last_t = t;
  s->last_idle = idle;
  s->last_cpu = cpu;
}
