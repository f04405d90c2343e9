/* unit.h: the tiny unit-test runner shared by tests/unit/test_*.c.
 * Each TEST is a function; RUN_TESTS runs them in order, prints one line per
 * test and closes with "N passed, N failed" (exit 1 when any failed). */
#ifndef HW_UNIT_H
#define HW_UNIT_H

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int unit_failed_;

#define ASSERT_TRUE(c) do { if (!(c)) { \
  fprintf(stderr, "  %s:%d: assertion failed: %s\n", __FILE__, __LINE__, #c); \
  unit_failed_ = 1; return; } } while (0)
#define ASSERT_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
  if (a_ != b_) { fprintf(stderr, "  %s:%d: %s == %s: %lld != %lld\n", \
    __FILE__, __LINE__, #a, #b, a_, b_); unit_failed_ = 1; return; } } while (0)
#define ASSERT_STREQ(a, b) do { const char *a_ = (a), *b_ = (b); \
  if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) { \
    fprintf(stderr, "  %s:%d: %s == %s: \"%s\" != \"%s\"\n", __FILE__, \
      __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
    unit_failed_ = 1; return; } } while (0)

typedef struct { const char *name; void (*fn)(void); } unit_test_t;
#define TEST(name) static void name(void)
#define T(name) { #name, name }

static int unit_run(const char *suite, const unit_test_t *t, size_t n) {
  size_t i, pass = 0, fail = 0;
  for (i = 0; i < n; i++) {
    unit_failed_ = 0;
    t[i].fn();
    printf("%s %s.%s\n", unit_failed_ ? "FAIL" : "ok", suite, t[i].name);
    if (unit_failed_) fail++; else pass++;
  }
  printf("%zu passed, %zu failed\n", pass, fail);
  return fail ? 1 : 0;
}
#define RUN_TESTS(suite, ...) int main(void) { \
  static const unit_test_t t_[] = { __VA_ARGS__ }; \
  return unit_run(suite, t_, sizeof t_ / sizeof t_[0]); }

#endif
