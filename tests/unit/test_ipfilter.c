/* test_ipfilter: parsing and matching of core/ipfilter (IPv4, IPv6, CIDR,
 * IPv4-mapped addresses, malformed entries).  No loop involved. */
#include "ipfilter.h"
#include "unit.h"

#include <errno.h>

/* Parses the given entries, checks ip against them, frees the filter.
 * Returns the match result, or -100 + error when the list fails to parse. */
static int match1(const char *entry, const char *ip) {
  hw_ipfilter_t *f;
  char err[128];
  int rc = hw_ipfilter_parse(&entry, 1, &f, err, sizeof err);

  if (rc < 0)
    return -100 + rc;
  rc = hw_ipfilter_match(f, ip);
  hw_ipfilter_free(f);
  return rc;
}

TEST(v4_single) {
  ASSERT_EQ(match1("127.0.0.1", "127.0.0.1"), 1);
  ASSERT_EQ(match1("127.0.0.1", "127.0.0.2"), 0);
}

TEST(v4_cidr) {
  ASSERT_EQ(match1("10.1.0.0/16", "10.1.255.7"), 1);
  ASSERT_EQ(match1("10.1.0.0/16", "10.2.0.1"), 0);
  ASSERT_EQ(match1("10.1.2.3/16", "10.1.99.99"), 1);   /* host bits masked */
  ASSERT_EQ(match1("10.0.0.0/9", "10.127.0.1"), 1);    /* partial byte */
  ASSERT_EQ(match1("10.0.0.0/9", "10.128.0.1"), 0);
  ASSERT_EQ(match1("0.0.0.0/0", "203.0.113.9"), 1);
  ASSERT_EQ(match1("0.0.0.0/0", "2001:db8::1"), 0);    /* v4 /0 is not ::/0 */
  ASSERT_EQ(match1("192.0.2.5/32", "192.0.2.5"), 1);
  ASSERT_EQ(match1("192.0.2.5/32", "192.0.2.4"), 0);
}

TEST(v6) {
  ASSERT_EQ(match1("::1", "::1"), 1);
  ASSERT_EQ(match1("::1", "::2"), 0);
  ASSERT_EQ(match1("::1/128", "0:0:0:0:0:0:0:1"), 1);
  ASSERT_EQ(match1("::/0", "fe80::1"), 1);
  ASSERT_EQ(match1("::/0", "10.0.0.1"), 1);            /* every address */
  ASSERT_EQ(match1("2001:db8::/32", "2001:db8:ffff::1"), 1);
  ASSERT_EQ(match1("2001:db8::/32", "2001:db9::1"), 0);
  ASSERT_EQ(match1("2001:db8::1/32", "2001:db8::2"), 1); /* host bits masked */
}

TEST(v4_mapped) {
  ASSERT_EQ(match1("127.0.0.1", "::ffff:127.0.0.1"), 1);
  ASSERT_EQ(match1("::ffff:127.0.0.1", "127.0.0.1"), 1);
  ASSERT_EQ(match1("10.0.0.0/8", "::ffff:10.9.8.7"), 1);
  ASSERT_EQ(match1("::ffff:0:0/96", "198.51.100.1"), 1);
  ASSERT_EQ(match1("127.0.0.1", "::1"), 0);
}

TEST(list_and_empty) {
  const char *list[] = { "10.0.0.0/8", "::1", "192.168.1.1" };
  hw_ipfilter_t *f;
  char err[64] = "";

  ASSERT_EQ(hw_ipfilter_parse(NULL, 0, &f, err, sizeof err), 0);
  ASSERT_EQ(hw_ipfilter_match(f, "127.0.0.1"), 0);
  ASSERT_EQ(hw_ipfilter_match(f, "::"), 0);
  hw_ipfilter_free(f);
  ASSERT_EQ(hw_ipfilter_parse(list, 3, &f, err, sizeof err), 0);
  ASSERT_EQ(hw_ipfilter_match(f, "192.168.1.1"), 1);
  ASSERT_EQ(hw_ipfilter_match(f, "::1"), 1);
  ASSERT_EQ(hw_ipfilter_match(f, "10.200.0.1"), 1);
  ASSERT_EQ(hw_ipfilter_match(f, "192.168.1.2"), 0);
  hw_ipfilter_free(f);
}

TEST(malformed) {
  static const char *bad[] = {
    "10.0.0.256", "1.2.3.4/33", "::1/129", "abc", "", "1.2.3.4/", "1.2.3.4/-1",
    "1.2.3.4/ 8", "1.2.3.4/+8", " 1.2.3.4", "1.2.3.4 ", "fe80::1%eth0",
    "fe80::1%eth0/64", "/8", "1.2.3.4/8/8", "1.2.3", "1.2.3.4/4294967304",
    "010.0.0.1",
  };
  size_t i;

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *list[] = { "127.0.0.1", bad[i] };
    hw_ipfilter_t *f = (hw_ipfilter_t *) 1;
    char err[128], want[128];

    snprintf(want, sizeof want, "invalid address '%s'", bad[i]);
    ASSERT_EQ(hw_ipfilter_parse(list, 2, &f, err, sizeof err), -EINVAL);
    ASSERT_TRUE(f == NULL);
    ASSERT_STREQ(err, want);
  }
}

TEST(err_truncated) {
  const char *list[] = { "this-is-not-an-address-at-all" };
  hw_ipfilter_t *f;
  char err[12];

  memset(err, 'x', sizeof err);
  ASSERT_EQ(hw_ipfilter_parse(list, 1, &f, err, sizeof err), -EINVAL);
  ASSERT_STREQ(err, "invalid add");               /* cut, still terminated */
  ASSERT_EQ(hw_ipfilter_parse(list, 1, &f, NULL, 0), -EINVAL);
}

TEST(bad_client) {
  ASSERT_EQ(match1("::/0", "not-an-ip"), 0);
  ASSERT_EQ(match1("::/0", ""), 0);
  ASSERT_EQ(match1("::/0", "10.0.0.1/8"), 0);
  ASSERT_EQ(match1("::/0", NULL), 0);
}

TEST(ip_parse) {
  unsigned char a[16];
  static const unsigned char want[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0xff, 0xff, 192, 0, 2, 1 };

  ASSERT_EQ(hw_ip_parse("192.0.2.1", a), 0);
  ASSERT_EQ(memcmp(a, want, 16), 0);
  ASSERT_EQ(hw_ip_parse("::ffff:192.0.2.1", a), 0);
  ASSERT_EQ(memcmp(a, want, 16), 0);
  ASSERT_EQ(hw_ip_parse("192.0.2.1/32", a), -EINVAL);
}

RUN_TESTS("ipfilter", T(v4_single), T(v4_cidr), T(v6), T(v4_mapped),
          T(list_and_empty), T(malformed), T(err_truncated), T(bad_client),
          T(ip_parse))
