/* ipfilter: parsed lists of IPv4/IPv6 addresses and CIDR blocks, and the test
 * "is this client address in the list".  Parsed once per change, matched per
 * request in time linear in the (small) list with no allocation.
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) match IPv4 entries, and IPv4
 * clients match ::ffff:0:0/96-style entries.
 */
#ifndef HW_IPFILTER_H
#define HW_IPFILTER_H

#include <stddef.h>

typedef struct hw_ipfilter_s hw_ipfilter_t;

/* Parses n entries ("10.1.0.0/16", "::1", "127.0.0.1", "2001:db8::/32").
 * Returns 0 and a new filter (empty when n == 0: matches nothing), or -EINVAL
 * with err filled as "invalid address 'ENTRY'" (naming the bad entry), or
 * -ENOMEM. */
int hw_ipfilter_parse(const char *const *entries, size_t n,
                      hw_ipfilter_t **out, char *err, size_t errlen);
void hw_ipfilter_free(hw_ipfilter_t *f);

/* 1 when ip (text) is inside any entry, 0 when not or when ip does not parse. */
int hw_ipfilter_match(const hw_ipfilter_t *f, const char *ip);

/* Parses one address (no prefix) into 16 bytes (IPv4 as ::ffff:a.b.c.d).
 * Returns 0 or -EINVAL. */
int hw_ip_parse(const char *ip, unsigned char out[16]);

/* 1 when the 16-byte address (as hw_ip_parse gives it) is in the list. */
int hw_ipfilter_match_addr(const hw_ipfilter_t *f, const unsigned char a[16]);

/* The longest X-Forwarded-For list believed (fields joined with ", "). */
#define HW_XFF_MAX 8192

/* The client address of a request: the socket peer, or when the peer is in
 * `trusted`, the right-most entry of the X-Forwarded-For list that is not in
 * `trusted` (every entry trusted: the left-most).  The list is the n field
 * values in arrival order, joined with ", " (RFC 9110 5.3); empty elements
 * are skipped; an entry may carry a port ("192.0.2.1:443", "[2001:db8::1]:80")
 * or brackets, which are dropped.  Nothing is truncated.
 * Returns 0 with out filled (NUL-terminated); -E2BIG when the trusted
 * peer's list is over HW_XFF_MAX bytes; -EINVAL when an entry that must be
 * read is not an address (err: "X-Forwarded-For: invalid entry 'ENTRY'");
 * -ENOSPC when out is too small. */
int hw_xff_client(const hw_ipfilter_t *trusted, const char *peer,
                  const char *const *fields, size_t n, char *out,
                  size_t outlen, char *err, size_t errlen);

#endif
