/* test_netpolicy: the outbound address policy (core/netpolicy): the
 * built-in link-local/metadata list, allow_private, the operator's deny
 * list and the messages that name them.  No sockets are opened. */
#include "netpolicy.h"
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

static char why[256];

/* Checks text (v4 or v6) against p. */
static int check(const hw_netpolicy_t *p, const char *ip, int allow_private) {
  struct sockaddr_storage ss;

  memset(&ss, 0, sizeof ss);
  why[0] = '\0';
  if (strchr(ip, ':') != NULL) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;
    s6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
      return -1000;
  } else {
    struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;
    s4->sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) != 1)
      return -1000;
  }
  return hw_netpolicy_check(p, (struct sockaddr *) &ss, allow_private, why,
                            sizeof why);
}

TEST(builtin_private) {
  hw_netpolicy_t *p;
  char err[64];

  ASSERT_EQ(hw_netpolicy_new(NULL, 0, &p, err, sizeof err), 0);
  ASSERT_EQ(check(p, "169.254.169.254", 0), -EACCES);
  ASSERT_TRUE(strstr(why, "169.254.169.254 is link-local or cloud metadata"));
  ASSERT_TRUE(strstr(why, "allow_private = true"));
  ASSERT_EQ(check(p, "169.254.0.1", 0), -EACCES);
  ASSERT_EQ(check(p, "fe80::1", 0), -EACCES);
  ASSERT_EQ(check(p, "febf:ffff::1", 0), -EACCES);     /* end of fe80::/10 */
  ASSERT_EQ(check(p, "fd00:ec2::254", 0), -EACCES);
  ASSERT_EQ(check(p, "::ffff:169.254.169.254", 0), -EACCES); /* mapped */
  ASSERT_EQ(check(p, "169.254.169.254", 1), 0);
  ASSERT_EQ(check(p, "fd00:ec2::254", 1), 0);
  ASSERT_EQ(check(p, "169.255.0.1", 0), 0);
  ASSERT_EQ(check(p, "fec0::1", 0), 0);
  ASSERT_EQ(check(p, "fd00:ec2::253", 0), 0);
  ASSERT_EQ(check(p, "127.0.0.1", 0), 0);
  ASSERT_EQ(check(p, "10.1.2.3", 0), 0);
  hw_netpolicy_free(p);
}

TEST(operator_deny) {
  const char *deny[] = {"10.0.0.0/8", "127.0.0.2", "2001:db8::/32"};
  hw_netpolicy_t *p;
  char err[64];

  ASSERT_EQ(hw_netpolicy_new(deny, 3, &p, err, sizeof err), 0);
  ASSERT_EQ(check(p, "10.9.8.7", 0), -EACCES);
  ASSERT_STREQ(why, "address 10.9.8.7 is denied by --outbound-deny 10.0.0.0/8");
  ASSERT_EQ(check(p, "10.9.8.7", 1), -EACCES); /* allow_private: still no */
  ASSERT_EQ(check(p, "127.0.0.2", 1), -EACCES);
  ASSERT_STREQ(why, "address 127.0.0.2 is denied by --outbound-deny 127.0.0.2");
  ASSERT_EQ(check(p, "::ffff:10.0.0.1", 0), -EACCES);
  ASSERT_EQ(check(p, "2001:db8:1::1", 0), -EACCES);
  ASSERT_EQ(check(p, "127.0.0.3", 0), 0);
  ASSERT_EQ(check(p, "11.0.0.1", 0), 0);
  hw_netpolicy_free(p);
}

TEST(bad_entries_and_families) {
  const char *bad[] = {"10.0.0.0/8", "10.0.0.0/33"};
  const char *nul[] = {"nonsense"};
  struct sockaddr_un un;
  hw_netpolicy_t *p = (hw_netpolicy_t *) 1;
  char err[64];

  ASSERT_EQ(hw_netpolicy_new(bad, 2, &p, err, sizeof err), -EINVAL);
  ASSERT_TRUE(p == NULL);
  ASSERT_STREQ(err, "invalid address '10.0.0.0/33'");
  ASSERT_EQ(hw_netpolicy_new(nul, 1, &p, err, sizeof err), -EINVAL);
  ASSERT_EQ(hw_netpolicy_new(NULL, 0, &p, err, sizeof err), 0);
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  ASSERT_EQ(hw_netpolicy_check(p, (struct sockaddr *) &un, 1, why, sizeof why),
            -EAFNOSUPPORT);
  hw_netpolicy_free(p);
}

RUN_TESTS("netpolicy", T(builtin_private), T(operator_deny),
          T(bad_entries_and_families))
