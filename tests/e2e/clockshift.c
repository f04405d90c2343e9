/* clockshift.so: LD_PRELOAD shim for the e2e tests of monotonic waits.
 * CLOCK_REALTIME (clock_gettime, gettimeofday, time) is moved by the number
 * of seconds written in the file named by HW_CLOCK_SHIFT (re-read at most
 * every 20 ms); the monotonic clocks are left alone.  Test use only. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

typedef int (*cg_fn)(clockid_t, struct timespec *);

static double shift(void) {
  static double cached, read_at = -1;
  struct timespec m;
  const char *path = getenv("HW_CLOCK_SHIFT");
  cg_fn real = (cg_fn) dlsym(RTLD_NEXT, "clock_gettime");
  double now;
  FILE *f;

  if (path == NULL || real == NULL)
    return 0;
  real(CLOCK_MONOTONIC, &m);
  now = m.tv_sec + m.tv_nsec / 1e9;
  if (read_at >= 0 && now - read_at < 0.02)
    return cached;
  read_at = now;
  if ((f = fopen(path, "r")) != NULL) {
    if (fscanf(f, "%lf", &cached) != 1)
      cached = 0;
    fclose(f);
  }
  return cached;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
  cg_fn real = (cg_fn) dlsym(RTLD_NEXT, "clock_gettime");
  int rc = real(id, ts);
  double s;
  long long whole;

  if (rc != 0 || (id != CLOCK_REALTIME && id != CLOCK_REALTIME_COARSE))
    return rc;
  s = shift();
  whole = (long long) s;
  ts->tv_sec += whole;
  ts->tv_nsec += (long) ((s - whole) * 1e9);
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
  return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
  struct timespec ts;
  (void) tz;
  clock_gettime(CLOCK_REALTIME, &ts);
  tv->tv_sec = ts.tv_sec;
  tv->tv_usec = ts.tv_nsec / 1000;
  return 0;
}

time_t time(time_t *out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (out != NULL)
    *out = ts.tv_sec;
  return ts.tv_sec;
}
