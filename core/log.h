/* log: one line per event on stderr.
 *
 * Owns: the output format, chosen once at start: text
 * ("TIME [module] message") or JSON ({"time","module","msg"} per line, for
 * log shippers).  Uses: stderr only.  Thread-safe: one fprintf per line.
 */
#ifndef HW_LOG_H
#define HW_LOG_H

enum { HW_LOG_TEXT, HW_LOG_JSON };

/* Sets the format of every later line (main, before anything logs). */
void hw_log_set_format(int format);
/* Parses "text" or "json"; returns HW_LOG_* or -1. */
int hw_log_parse_format(const char *name);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void hw_log(const char *module, const char *fmt, ...);

#endif
