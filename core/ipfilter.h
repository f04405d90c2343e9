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

#endif
