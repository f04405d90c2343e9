/* log: timestamped single-line events on stderr (the engine's only log),
 * as text or as JSON lines. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int log_format = HW_LOG_TEXT;

void hw_log_set_format(int format) { log_format = format; }

int hw_log_parse_format(const char *name) {
  if (strcmp(name, "text") == 0)
    return HW_LOG_TEXT;
  if (strcmp(name, "json") == 0)
    return HW_LOG_JSON;
  return -1;
}

/* JSON string body of s into out (escapes quotes, backslashes and control
 * bytes; other bytes pass through, the message is the engine's own text). */
static void json_escape(char *out, size_t len, const char *s) {
  size_t o = 0;
  for (; *s != '\0' && o + 7 < len; s++) {
    unsigned char c = (unsigned char) *s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char) c;
    } else if (c < 0x20) {
      o += (size_t) snprintf(out + o, len - o, "\\u%04x", c);
    } else {
      out[o++] = (char) c;
    }
  }
  out[o] = '\0';
}

void hw_log(const char *module, const char *fmt, ...) {
  char msg[2048], stamp[96];
  struct timespec ts;
  struct tm tm;
  va_list ap;

  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
           tm.tm_sec, ts.tv_nsec / 1000000);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (log_format == HW_LOG_JSON) {
    char esc[2 * sizeof msg], mod[128];
    json_escape(esc, sizeof esc, msg);
    json_escape(mod, sizeof mod, module);
    fprintf(stderr, "{\"time\":\"%s\",\"module\":\"%s\",\"msg\":\"%s\"}\n",
            stamp, mod, esc);
  } else {
    fprintf(stderr, "%s [%s] %s\n", stamp, module, msg);
  }
}
