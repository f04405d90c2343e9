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

/* hw_xff_client with trusted = list, fields as given; returns rc and the
 * client in out. */
static int xff(const char *list, const char *peer, const char *const *fields,
               size_t n, char *out, size_t outlen) {
  const char *ents[4];
  char buf[256], err[128];
  size_t k = 0;
  hw_ipfilter_t *f = NULL;
  int rc;

  snprintf(buf, sizeof buf, "%s", list);
  for (char *t = strtok(buf, " "); t != NULL && k < 4; t = strtok(NULL, " "))
    ents[k++] = t;
  if (hw_ipfilter_parse(ents, k, &f, err, sizeof err) != 0)
    return -1000;
  rc = hw_xff_client(f, peer, fields, n, out, outlen, err, sizeof err);
  hw_ipfilter_free(f);
  return rc;
}

TEST(xff_rightmost_untrusted) {
  char out[64];
  const char *one[] = {"192.0.2.1, 10.0.0.7"};
  const char *two[] = {"192.0.2.66", "192.0.2.1"}; /* forged first field */
  const char *chain[] = {"192.0.2.9, 192.0.2.1", "10.0.0.8, 10.0.0.7"};
  const char *alltrusted[] = {"10.0.0.3, 10.0.0.2"};

  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", one, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "192.0.2.1");
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", two, 2, out, sizeof out), 0);
  ASSERT_STREQ(out, "192.0.2.1");
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", chain, 2, out, sizeof out), 0);
  ASSERT_STREQ(out, "192.0.2.1");
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", alltrusted, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "10.0.0.3");
  /* untrusted peer: the header is not read, even when it is garbage */
  const char *junk[] = {"not an address"};
  ASSERT_EQ(xff("10.0.0.0/8", "192.0.2.5", junk, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "192.0.2.5");
  /* no header: the peer */
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", NULL, 0, out, sizeof out), 0);
  ASSERT_STREQ(out, "10.0.0.1");
}

TEST(xff_forms) {
  char out[64];
  const char *ports[] = {"[2001:db8::1]:443"};
  const char *v4port[] = {"192.0.2.1:8080"};
  const char *bracket[] = {"[2001:db8::2]"};
  const char *v6[] = {" 2001:db8::3 ,, "};
  const char *empty[] = {""};

  ASSERT_EQ(xff("::1", "::1", ports, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "2001:db8::1");
  ASSERT_EQ(xff("::1", "::1", v4port, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "192.0.2.1");
  ASSERT_EQ(xff("::1", "::1", bracket, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "2001:db8::2");
  ASSERT_EQ(xff("::1", "::1", v6, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "2001:db8::3");
  ASSERT_EQ(xff("::1", "::1", empty, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "::1");
}

TEST(xff_bad_entries) {
  char out[64];
  const char *bad[][1] = {{"192.0.2.1, evil"}, {"[::1"}, {"[::1]x"},
                          {"1.2.3.4/8"}, {"1.2.3.4\x01"}, {"01.2.3.4"}};
  const char *ok_left[] = {"garbage, 192.0.2.1"}; /* never reached */
  size_t i;

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", bad[i], 1, out, sizeof out),
              -EINVAL);
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", ok_left, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "192.0.2.1");
}

TEST(xff_long_lists) {
  static char big[HW_XFF_MAX + 64], pad[HW_XFF_MAX];
  const char *fields[2];
  char out[64];
  size_t n = 0;

  /* 8 KiB exactly is fine and the right-most entry is read, wherever it is */
  while (n + 10 <= HW_XFF_MAX - 11)
    n += (size_t) sprintf(big + n, "10.0.0.9, ");
  memset(big + n, ' ', HW_XFF_MAX - 11 - n);
  strcpy(big + HW_XFF_MAX - 11, "192.0.2.77,");
  fields[0] = big;
  ASSERT_EQ(strlen(big), HW_XFF_MAX);
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", fields, 1, out, sizeof out), 0);
  ASSERT_STREQ(out, "192.0.2.77");
  /* one byte more, counting the ", " that joins two fields */
  memset(pad, ' ', sizeof pad); /* blank elements are skipped */
  pad[HW_XFF_MAX - 9] = '\0';
  fields[0] = pad;
  fields[1] = "10.0.0.2";
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", fields, 2, out, sizeof out), -E2BIG);
  pad[HW_XFF_MAX - 9] = ' ';
  pad[HW_XFF_MAX - 10] = '\0';
  ASSERT_EQ(strlen(pad) + 2 + strlen(fields[1]), HW_XFF_MAX);
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", fields, 2, out, sizeof out), 0);
  ASSERT_STREQ(out, "10.0.0.2");   /* all trusted up to the left-most */
  /* too small an output buffer is an error, never a cut address */
  ASSERT_EQ(xff("10.0.0.0/8", "10.0.0.1", fields, 2, out, 4), -ENOSPC);
}

RUN_TESTS("ipfilter", T(v4_single), T(v4_cidr), T(v6), T(v4_mapped),
          T(list_and_empty), T(malformed), T(err_truncated), T(bad_client),
          T(ip_parse), T(xff_rightmost_untrusted), T(xff_forms),
          T(xff_bad_entries), T(xff_long_lists))
