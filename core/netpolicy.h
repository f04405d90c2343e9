/* netpolicy: which addresses outbound calls may connect to.
 *
 * Owns: the built-in list of link-local and cloud-metadata addresses
 * (169.254.0.0/16, fe80::/10, fd00:ec2::254) and the operator's
 * --outbound-deny blocks, each parsed once.
 * Uses: ipfilter for parsing and matching.
 *
 * The check is made by http_client on the address a socket is about to
 * connect to, after DNS, for every connection (redirect hops included), so
 * a name that resolves differently the second time (DNS rebinding) gains
 * nothing.  The built-in list is lifted for a connector that sets
 * allow_private = true; the operator's list never is.
 */
#ifndef HW_NETPOLICY_H
#define HW_NETPOLICY_H

#include <stddef.h>
#include <sys/socket.h>

typedef struct hw_netpolicy_s hw_netpolicy_t;

/* Parses the operator's n deny entries (CIDR or address).  Returns 0 and a
 * new policy, -EINVAL with err naming the bad entry, or -ENOMEM. */
int hw_netpolicy_new(const char *const *deny, size_t n, hw_netpolicy_t **out,
                     char *err, size_t errlen);
void hw_netpolicy_free(hw_netpolicy_t *p);

/* 0 when connecting to sa (AF_INET or AF_INET6) is allowed; otherwise
 * -EACCES with why set, e.g. "address 169.254.169.254 is link-local or cloud
 * metadata (set allow_private = true on the connector to allow it)" or
 * "address 10.1.2.3 is denied by --outbound-deny 10.0.0.0/8".  Other
 * families are refused (-EAFNOSUPPORT). */
int hw_netpolicy_check(const hw_netpolicy_t *p, const struct sockaddr *sa,
                       int allow_private, char *why, size_t whylen);

#endif
