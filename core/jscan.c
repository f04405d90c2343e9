/* jscan: see jscan.h.  The checker mirrors core/json.c's decoder rule for
 * rule (a body it passes must decode there, or the C accept path would
 * store what the Lua side cannot read back); the walkers after it trust
 * text the checker has passed. */
#include "jscan.h"

#include "codec.h"
#include "json.h"
#include "json_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const unsigned char *p, *end;
  int depth;
} scan_t;

static void skip_ws(scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' ||
                           *s->p == '\t'))
    s->p++;
}

static int is_hex(unsigned c) {
  return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

static int chk_string(scan_t *s) {
  const unsigned char *p = s->p + 1, *end = s->end;
  while (p < end) {
    unsigned c = *p;
    if (c == '"') {
      s->p = p + 1;
      return 0;
    }
    if (c < 0x20)
      return -1;
    if (c >= 0x80) {
      int n = hw_json__utf8_seq(p, end);
      if (n == 0)
        return -1;
      p += n;
      continue;
    }
    if (c == '\\') {
      if (p + 1 >= end)
        return -1;
      switch (p[1]) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r':
      case 't':
        p += 2;
        continue;
      case 'u':
        if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) ||
            !is_hex(p[5]))
          return -1;
        p += 6; /* a lone surrogate decodes (to U+FFFD) */
        continue;
      default:
        return -1;
      }
    }
    p++;
  }
  return -1;
}

static int chk_number(scan_t *s) {
  const unsigned char *start = s->p, *p;
  hw_json_num_t num;
  int is_int, neg, overflow;
  uint64_t acc;
  char small[64], *text;
  double v;

  if (hw_json__scan_number(start, s->end, &num) != 0)
    return -1;
  p = num.end;
  neg = num.neg, is_int = num.is_int, overflow = num.overflow, acc = num.acc;
  s->p = p;
  if (is_int && !overflow &&
      (neg ? acc <= (uint64_t) INT64_MAX + 1 : acc <= (uint64_t) INT64_MAX))
    return 0;
  /* as the decoder: strtod, and a double overflow (1e999) is an error */
  if ((size_t) (p - start) < sizeof small) {
    text = small;
  } else {
    text = malloc((size_t) (p - start) + 1);
    if (text == NULL)
      return -1;
  }
  memcpy(text, start, (size_t) (p - start));
  text[p - start] = '\0';
  v = strtod(text, NULL);
  if (text != small)
    free(text);
  return isinf(v) ? -1 : 0;
}

static int chk_literal(scan_t *s, const char *w, size_t n) {
  if ((size_t) (s->end - s->p) < n || memcmp(s->p, w, n) != 0 ||
      (s->p + n < s->end && hw_json__is_word(s->p[n])))
    return -1;
  s->p += n;
  return 0;
}

static int chk_value(scan_t *s);

static int chk_container(scan_t *s, int obj) {
  unsigned close = obj ? '}' : ']';
  if (++s->depth > HW_JSON_MAX_DEPTH)
    return -1;
  s->p++;
  skip_ws(s);
  if (s->p < s->end && *s->p == close) {
    s->p++;
    s->depth--;
    return 0;
  }
  for (;;) {
    if (obj) {
      if (s->p >= s->end || *s->p != '"' || chk_string(s) != 0)
        return -1;
      skip_ws(s);
      if (s->p >= s->end || *s->p != ':')
        return -1;
      s->p++;
    }
    if (chk_value(s) != 0)
      return -1;
    skip_ws(s);
    if (s->p >= s->end)
      return -1;
    if (*s->p == close) {
      s->p++;
      s->depth--;
      return 0;
    }
    if (*s->p != ',')
      return -1;
    s->p++;
    skip_ws(s);
  }
}

static int chk_value(scan_t *s) {
  skip_ws(s);
  if (s->p >= s->end)
    return -1;
  switch (*s->p) {
  case '{': return chk_container(s, 1);
  case '[': return chk_container(s, 0);
  case '"': return chk_string(s);
  case 't': return chk_literal(s, "true", 4);
  case 'f': return chk_literal(s, "false", 5);
  case 'n': return chk_literal(s, "null", 4);
  default:
    if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
      return chk_number(s);
    return -1;
  }
}

int hw_jscan_check(const char *text, size_t n, hw_jslice_t *root) {
  scan_t s = {(const unsigned char *) text, (const unsigned char *) text + n, 0};
  const unsigned char *start;
  skip_ws(&s);
  start = s.p;
  if (chk_value(&s) != 0)
    return -1;
  if (root != NULL) {
    root->p = (const char *) start;
    root->n = (size_t) (s.p - start);
  }
  skip_ws(&s);
  return s.p == s.end ? 0 : -1;
}

/* --- walking checked text ------------------------------------------- */

static const char *ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  return p;
}

/* The end of the (checked) value at p. */
static const char *skip_value(const char *p, const char *end) {
  int depth = 0;
  do {
    p = ws(p, end);
    if (p >= end)
      return end;
    if (*p == '"') {
      for (p++; p < end && *p != '"'; p++)
        if (*p == '\\')
          p++;
      p++;
    } else if (*p == '{' || *p == '[') {
      depth++;
      p++;
    } else if (*p == '}' || *p == ']') {
      depth--;
      p++;
    } else if (*p == ',' || *p == ':') {
      p++;
    } else {
      while (p < end && hw_json__is_word((unsigned char) *p))
        p++;
    }
  } while (depth > 0);
  return p;
}

int hw_jscan_next(const char **pos, const char *end, hw_jslice_t *key,
                  hw_jslice_t *val) {
  const char *p = ws(*pos + 1, end), *k;
  if (p >= end || *p == '}')
    return 0;
  k = ++p;
  while (p < end && *p != '"')
    p += *p == '\\' ? 2 : 1;
  key->p = k;
  key->n = (size_t) (p - k);
  p = ws(p + 1, end) + 1; /* past ':' */
  p = ws(p, end);
  val->p = p;
  p = skip_value(p, end);
  val->n = (size_t) (p - val->p);
  *pos = ws(p, end); /* at ',' or '}': the next call steps over it */
  return 1;
}

int hw_jscan_member(hw_jslice_t obj, const char *key, size_t klen,
                    hw_jslice_t *val) {
  const char *pos = obj.p, *end = obj.p + obj.n;
  hw_jslice_t k, v;
  int found = 0;
  while (hw_jscan_next(&pos, end, &k, &v)) {
    if (memchr(k.p, '\\', k.n) != NULL)
      return -1;
    if (k.n == klen && memcmp(k.p, key, klen) == 0) {
      *val = v;
      found = 1;
    }
  }
  return found;
}

int hw_jscan_integer(hw_jslice_t num, int64_t *out, int *literal) {
  char small[64], *e;
  size_t i;
  double d;
  int plain = 1;

  *literal = 0;
  if (num.n == 0 || num.n >= sizeof small)
    return 0; /* a long literal: the caller lets the Lua side decide */
  memcpy(small, num.p, num.n); /* (a slice is not terminated) */
  small[num.n] = '\0';
  for (i = 0; i < num.n; i++)
    if (small[i] == '.' || small[i] == 'e' || small[i] == 'E')
      plain = 0;
  if (plain && strcmp(small, "-0") != 0) {
    /* an int64 literal decodes exactly (-0 is a float) */
    long long v;
    errno = 0;
    v = strtoll(small, &e, 10);
    if (errno == 0 && *e == '\0') {
      *out = v;
      *literal = 1;
      return 1;
    }
  }
  d = strtod(small, NULL);
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) ||
      floor(d) != d)
    return 0;
  *out = (int64_t) d;
  return 1;
}

/* --- the door's reads ------------------------------------------------- */

int hw_jscan_elem(const char **pos, const char *end, hw_jslice_t *val) {
  const char *p = ws(*pos + 1, end);
  if (p >= end || *p == ']')
    return 0;
  val->p = p;
  p = skip_value(p, end);
  val->n = (size_t) (p - val->p);
  *pos = ws(p, end); /* at ',' or ']' */
  return 1;
}

static unsigned hex4(const char *p) {
  return (unsigned) (hw_hex_val(p[0]) << 12 | hw_hex_val(p[1]) << 8 |
                     hw_hex_val(p[2]) << 4 | hw_hex_val(p[3]));
}

static size_t put_utf8(unsigned char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (unsigned char) cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char) (0xC0 | (cp >> 6));
    o[1] = (unsigned char) (0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char) (0xE0 | (cp >> 12));
    o[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
    o[2] = (unsigned char) (0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char) (0xF0 | (cp >> 18));
  o[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
  o[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
  o[3] = (unsigned char) (0x80 | (cp & 0x3F));
  return 4;
}

/* Unescapes the text between p and end (no quotes); out NULL: counts. */
static size_t unescape(const char *p, const char *end, unsigned char *out,
                       size_t cap) {
  size_t n = 0, k;
  unsigned char tmp[4];
  while (p < end) {
    const unsigned char *src = (const unsigned char *) p;
    if (*p != '\\') {
      k = 1;
      p++;
    } else {
      unsigned c = (unsigned char) p[1], cp;
      p += 2;
      src = tmp;
      k = 1;
      switch (c) {
      case 'b': tmp[0] = '\b'; break;
      case 'f': tmp[0] = '\f'; break;
      case 'n': tmp[0] = '\n'; break;
      case 'r': tmp[0] = '\r'; break;
      case 't': tmp[0] = '\t'; break;
      case 'u':
        cp = hex4(p);
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && end - p >= 6 && p[0] == '\\' &&
            p[1] == 'u') {
          unsigned lo = hex4(p + 2);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF)
          cp = 0xFFFD;
        k = put_utf8(tmp, cp);
        break;
      default: tmp[0] = (unsigned char) c; break; /* " \ / */
      }
    }
    if (out != NULL && n + k <= cap)
      memcpy(out + n, src, k);
    n += k;
  }
  return n;
}

int hw_jscan_string(hw_jslice_t str, char *out, size_t cap, size_t *len) {
  if (str.n < 2 || str.p[0] != '"')
    return -EINVAL;
  *len = unescape(str.p + 1, str.p + str.n - 1, (unsigned char *) out, cap);
  return *len <= cap ? 0 : -E2BIG;
}

/* s[0..n) against escaped text between p and end (no quotes). */
static int equal_text(const char *p, const char *end, const char *s,
                      size_t n) {
  unsigned char small[256], *buf = small;
  int eq;
  if (memchr(p, '\\', (size_t) (end - p)) == NULL)
    return (size_t) (end - p) == n && memcmp(p, s, n) == 0;
  if (unescape(p, end, NULL, 0) != n)
    return 0;
  if (n > sizeof small && (buf = malloc(n)) == NULL)
    return 0;
  unescape(p, end, buf, n);
  eq = memcmp(buf, s, n) == 0;
  if (buf != small)
    free(buf);
  return eq;
}

int hw_jscan_equal(hw_jslice_t str, const char *s, size_t n) {
  if (str.n < 2 || str.p[0] != '"')
    return 0;
  return equal_text(str.p + 1, str.p + str.n - 1, s, n);
}

int hw_jscan_find(hw_jslice_t obj, const char *key, size_t klen,
                  hw_jslice_t *val) {
  const char *pos = obj.p, *end = obj.p + obj.n;
  hw_jslice_t k, v;
  int found = 0;
  if (obj.n == 0 || obj.p[0] != '{')
    return 0;
  while (hw_jscan_next(&pos, end, &k, &v))
    if (equal_text(k.p, k.p + k.n, key, klen)) {
      *val = v;
      found = 1; /* the last one, as the decoder keeps */
    }
  return found;
}

double hw_jscan_double(hw_jslice_t num) {
  char small[64], *tmp = small;
  double d;
  if (num.n >= sizeof small && (tmp = malloc(num.n + 1)) == NULL)
    return NAN;
  memcpy(tmp, num.p, num.n); /* (a slice is not terminated) */
  tmp[num.n] = '\0';
  d = strtod(tmp, NULL);
  if (tmp != small)
    free(tmp);
  return d;
}
