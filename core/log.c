/* log: timestamped single-line events on stderr (the engine's only log). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

void hw_log(const char *module, const char *fmt, ...) {
  char line[2048];
  struct timespec ts;
  struct tm tm;
  va_list ap;
  int n;

  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] ",
               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
               tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, module);
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t) n, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s\n", line);
}
