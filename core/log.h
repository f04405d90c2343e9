/* log: one line per event on stderr: "TIME LEVEL [module] message". */
#ifndef HW_LOG_H
#define HW_LOG_H

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void hw_log(const char *module, const char *fmt, ...);

#endif
