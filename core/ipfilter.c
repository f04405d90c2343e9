/* ipfilter: parses allow/deny lists of IPv4/IPv6 addresses and CIDR blocks
 * and answers "is this client address in the list".
 *
 * Owns: one flat array of entries per filter (a single allocation).
 * Uses: inet_pton only; no libuv, no other hookwork module.
 *
 * Every address is kept as 16 bytes, IPv4 as the IPv4-mapped IPv6 address
 * ::ffff:a.b.c.d with its prefix length raised by 96, so a single
 * prefix comparison serves both families and mapped clients match plain IPv4
 * entries (and the other way round) without special cases.
 */
#include "ipfilter.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  unsigned char addr[16];  /* host bits already cleared */
  unsigned char plen;      /* 0..128, in IPv6 terms */
} entry_t;

struct hw_ipfilter_s {
  size_t n;
  entry_t e[];
};

/* Parses a bare address; *v4 says which family it was so the caller knows
 * the prefix limit.  inet_pton rejects whitespace, zones ("%eth0"), leading
 * zeros in IPv4 octets and anything else that is not exactly an address. */
static int parse_addr(const char *s, unsigned char out[16], int *v4) {
  unsigned char a4[4];

  if (inet_pton(AF_INET, s, a4) == 1) {
    memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    memcpy(out + 12, a4, 4);
    *v4 = 1;
    return 0;
  }
  if (inet_pton(AF_INET6, s, out) == 1) {
    *v4 = 0;
    return 0;
  }
  return -EINVAL;
}

int hw_ip_parse(const char *ip, unsigned char out[16]) {
  int v4;

  if (ip == NULL)
    return -EINVAL;
  return parse_addr(ip, out, &v4);
}

/* Decimal digits only, at least one, value <= max.  Leading zeros are
 * harmless ("/08" is 8); signs, spaces and the empty string are not. */
static int parse_prefix(const char *s, unsigned max, unsigned *out) {
  unsigned v = 0;

  if (*s == '\0')
    return -EINVAL;
  for (; *s != '\0'; s++) {
    if (*s < '0' || *s > '9')
      return -EINVAL;
    v = v * 10 + (unsigned) (*s - '0');
    if (v > max)                        /* also stops any overflow */
      return -EINVAL;
  }
  *out = v;
  return 0;
}

/* Clears the bits past plen so matching can compare bytes directly; this is
 * what makes "10.1.2.3/16" mean 10.1.0.0/16. */
static void mask_host_bits(unsigned char a[16], unsigned plen) {
  unsigned i;

  for (i = 0; i < 16; i++) {
    if (plen >= 8) {
      plen -= 8;
    } else {
      a[i] &= (unsigned char) (0xff00u >> plen);
      plen = 0;
    }
  }
}

/* One entry: "ADDR" or "ADDR/PREFIX", nothing else. */
static int parse_entry(const char *s, entry_t *e) {
  char buf[INET6_ADDRSTRLEN];
  const char *slash = strchr(s, '/');
  size_t alen = slash ? (size_t) (slash - s) : strlen(s);
  unsigned plen;
  int v4;

  if (alen >= sizeof buf)               /* too long to be an address */
    return -EINVAL;
  memcpy(buf, s, alen);
  buf[alen] = '\0';
  if (parse_addr(buf, e->addr, &v4) < 0)
    return -EINVAL;
  if (slash == NULL)
    plen = v4 ? 32 : 128;
  else if (parse_prefix(slash + 1, v4 ? 32 : 128, &plen) < 0)
    return -EINVAL;
  if (v4)
    plen += 96;
  mask_host_bits(e->addr, plen);
  e->plen = (unsigned char) plen;
  return 0;
}

static void set_err(char *err, size_t errlen, const char *entry) {
  if (err != NULL && errlen > 0)        /* snprintf truncates and terminates */
    snprintf(err, errlen, "invalid address '%s'", entry ? entry : "(null)");
}

int hw_ipfilter_parse(const char *const *entries, size_t n,
                      hw_ipfilter_t **out, char *err, size_t errlen) {
  hw_ipfilter_t *f;
  size_t i;

  assert(out != NULL);
  assert(n == 0 || entries != NULL);
  *out = NULL;
  if (n > (SIZE_MAX - sizeof *f) / sizeof f->e[0])
    return -ENOMEM;
  f = malloc(sizeof *f + n * sizeof f->e[0]);
  if (f == NULL)
    return -ENOMEM;
  f->n = n;
  for (i = 0; i < n; i++) {
    if (entries[i] == NULL || parse_entry(entries[i], &f->e[i]) < 0) {
      set_err(err, errlen, entries[i]);
      free(f);
      return -EINVAL;
    }
  }
  *out = f;
  return 0;
}

void hw_ipfilter_free(hw_ipfilter_t *f) {
  free(f);
}

/* 1 when the first plen bits of a equal the (already masked) entry. */
static int in_entry(const unsigned char a[16], const entry_t *e) {
  unsigned whole = e->plen / 8, rest = e->plen % 8;
  unsigned char m;

  if (memcmp(a, e->addr, whole) != 0)
    return 0;
  if (rest == 0)
    return 1;
  m = (unsigned char) (0xff00u >> rest);
  return (a[whole] & m) == e->addr[whole];
}

int hw_ipfilter_match_addr(const hw_ipfilter_t *f, const unsigned char a[16]) {
  size_t i;

  assert(f != NULL);
  for (i = 0; i < f->n; i++)
    if (in_entry(a, &f->e[i]))
      return 1;
  return 0;
}

int hw_ipfilter_match(const hw_ipfilter_t *f, const char *ip) {
  unsigned char a[16];

  assert(f != NULL);
  if (hw_ip_parse(ip, a) < 0)
    return 0;
  return hw_ipfilter_match_addr(f, a);
}

/* ---- X-Forwarded-For ---- */

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* Copies one list element [s, e) into buf as a bare address: blanks
 * trimmed, "[v6]" and "[v6]:port" unbracketed, "v4:port" without the port.
 * Returns its length (0: an empty element), or -EINVAL when it cannot be an
 * address at all (too long). */
static int xff_entry(const char *s, const char *e, char *buf, size_t cap) {
  const char *colon;
  size_t n;

  while (s < e && is_ows(*s))
    s++;
  while (e > s && is_ows(e[-1]))
    e--;
  if (s < e && *s == '[') {
    const char *rb = memchr(s, ']', (size_t) (e - s));
    if (rb == NULL)
      return -EINVAL;
    if (rb + 1 != e && rb[1] != ':')
      return -EINVAL;
    s++;
    e = rb;
  } else if ((colon = memchr(s, ':', (size_t) (e - s))) != NULL &&
             memchr(colon + 1, ':', (size_t) (e - colon - 1)) == NULL) {
    e = colon; /* one colon: v4:port (an IPv6 address has two or more) */
  }
  n = (size_t) (e - s);
  if (n >= cap)
    return -EINVAL;
  memcpy(buf, s, n);
  buf[n] = '\0';
  return (int) n;
}

static int xff_bad(const char *s, const char *e, char *err, size_t errlen) {
  while (s < e && is_ows(*s))
    s++;
  while (e > s && is_ows(e[-1]))
    e--;
  if (err != NULL && errlen > 0)
    snprintf(err, errlen, "X-Forwarded-For: invalid entry '%.*s'",
             (int) (e - s > 64 ? 64 : e - s), s);
  return -EINVAL;
}

int hw_xff_client(const hw_ipfilter_t *trusted, const char *peer,
                  const char *const *fields, size_t n, char *out,
                  size_t outlen, char *err, size_t errlen) {
  char buf[INET6_ADDRSTRLEN];
  unsigned char a[16];
  size_t i, total = 0;
  int len;

  if (strlen(peer) >= outlen)
    return -ENOSPC;
  strcpy(out, peer);
  if (trusted == NULL || n == 0 || !hw_ipfilter_match(trusted, peer))
    return 0;
  for (i = 0; i < n; i++) {
    total += strlen(fields[i]) + (i > 0 ? 2 : 0);
    if (total > HW_XFF_MAX)
      return -E2BIG;
  }
  /* Right to left over the fields, and over each field's elements. */
  for (i = n; i-- > 0;) {
    const char *f = fields[i], *end = f + strlen(f), *s;

    for (;;) {
      for (s = end; s > f && s[-1] != ','; s--) {}
      len = xff_entry(s, end, buf, sizeof buf);
      if (len < 0 || (len > 0 && hw_ip_parse(buf, a) < 0))
        return xff_bad(s, end, err, errlen);
      if (len > 0) {
        if ((size_t) len >= outlen)
          return -ENOSPC;
        memcpy(out, buf, (size_t) len + 1);
        if (!hw_ipfilter_match_addr(trusted, a))
          return 0;
      }
      if (s == f)
        break;
      end = s - 1; /* before the comma */
    }
  }
  return 0;
}
