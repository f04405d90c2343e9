/* netpolicy.c: the outbound address policy (see netpolicy.h).
 *
 * Owns: one filter for the built-in private list and one filter per
 * operator entry (so a refusal can name the entry that matched).
 * Uses: ipfilter.
 */
#include "netpolicy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipfilter.h"

#define MAX_DENY 64

/* Link-local (where cloud metadata services live: 169.254.169.254,
 * fd00:ec2::254 on AWS's IPv6) is never a webhook receiver by accident. */
static const char *const builtin[] = {"169.254.0.0/16", "fe80::/10",
                                      "fd00:ec2::254/128"};

struct hw_netpolicy_s {
  hw_ipfilter_t *priv;
  size_t n;
  hw_ipfilter_t *deny[MAX_DENY];
  char *text[MAX_DENY];
};

void hw_netpolicy_free(hw_netpolicy_t *p) {
  size_t i;

  if (p == NULL)
    return;
  hw_ipfilter_free(p->priv);
  for (i = 0; i < p->n; i++) {
    hw_ipfilter_free(p->deny[i]);
    free(p->text[i]);
  }
  free(p);
}

int hw_netpolicy_new(const char *const *deny, size_t n, hw_netpolicy_t **out,
                     char *err, size_t errlen) {
  hw_netpolicy_t *p;
  size_t i;
  int rc;

  *out = NULL;
  if (n > MAX_DENY) {
    snprintf(err, errlen, "at most %d entries", MAX_DENY);
    return -EINVAL;
  }
  if ((p = calloc(1, sizeof *p)) == NULL)
    return -ENOMEM;
  rc = hw_ipfilter_parse(builtin, sizeof builtin / sizeof builtin[0],
                         &p->priv, err, errlen);
  for (i = 0; rc == 0 && i < n; i++) {
    rc = hw_ipfilter_parse(&deny[i], 1, &p->deny[i], err, errlen);
    if (rc == 0 && (p->text[i] = strdup(deny[i])) == NULL) {
      hw_ipfilter_free(p->deny[i]);
      rc = -ENOMEM;
    }
    if (rc == 0)
      p->n++;
  }
  if (rc != 0) {
    hw_netpolicy_free(p);
    return rc;
  }
  *out = p;
  return 0;
}

int hw_netpolicy_check(const hw_netpolicy_t *p, const struct sockaddr *sa,
                       int allow_private, char *why, size_t whylen) {
  unsigned char a[16];
  char text[INET6_ADDRSTRLEN];
  size_t i;

  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *) sa;
    memset(a, 0, 10);
    a[10] = a[11] = 0xff;
    memcpy(a + 12, &s4->sin_addr, 4);
    inet_ntop(AF_INET, &s4->sin_addr, text, sizeof text);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) sa;
    memcpy(a, &s6->sin6_addr, 16); /* a mapped v4 matches v4 entries */
    inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof text);
  } else {
    snprintf(why, whylen, "address family %d is not allowed",
             (int) sa->sa_family);
    return -EAFNOSUPPORT;
  }
  for (i = 0; i < p->n; i++) {
    if (hw_ipfilter_match_addr(p->deny[i], a)) {
      snprintf(why, whylen, "address %s is denied by --outbound-deny %s",
               text, p->text[i]);
      return -EACCES;
    }
  }
  if (!allow_private && hw_ipfilter_match_addr(p->priv, a)) {
    snprintf(why, whylen,
             "address %s is link-local or cloud metadata (set allow_private "
             "= true on the connector to allow it)",
             text);
    return -EACCES;
  }
  return 0;
}
