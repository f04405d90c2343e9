/* fuzz_xff: the CIDR list parser, address matching and the
 * X-Forwarded-For client address (core/ipfilter.c).
 *
 * Input: "TRUSTED\nPEER\nFIELD\nFIELD..." where TRUSTED is a comma-separated
 * list of CIDR entries.  Checked: parsing never crashes; the client is the
 * peer or an address that parses; a client that is not the peer sits in the
 * list; matching agrees with itself on the text and byte forms. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ipfilter.h"

#define MAXF 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *buf = malloc(size + 1), *lines[MAXF + 2], *ents[32], *s;
  const char *fields[MAXF];
  hw_ipfilter_t *f = NULL;
  unsigned char a[16];
  char out[64], err[128];
  size_t nl = 0, ne = 0, i;
  int rc;

  if (buf == NULL)
    return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  for (s = buf; nl < MAXF + 2; nl++) {
    lines[nl] = s;
    if ((s = strchr(s, '\n')) == NULL) {
      nl++;
      break;
    }
    *s++ = '\0';
  }
  for (s = lines[0]; ne < 32; ne++) {
    ents[ne] = s;
    if ((s = strchr(s, ',')) == NULL) {
      ne++;
      break;
    }
    *s++ = '\0';
  }
  if (hw_ipfilter_parse((const char *const *) ents, ne, &f, err,
                        sizeof err) != 0) {
    assert(f == NULL);
    free(buf);
    return 0;
  }
  for (i = 2; i < nl; i++)
    fields[i - 2] = lines[i];
  if (nl >= 2) {
    const char *peer = lines[1];
    rc = hw_xff_client(f, peer, fields, nl > 2 ? nl - 2 : 0, out,
                       sizeof out, err, sizeof err);
    assert(rc == 0 || rc == -EINVAL || rc == -E2BIG || rc == -ENOSPC);
    if (rc == 0 && strcmp(out, peer) != 0) {
      /* a forwarded client: only reachable through a trusted peer */
      assert(hw_ipfilter_match(f, peer));
      assert(hw_ip_parse(out, a) == 0);
    }
    if (hw_ip_parse(peer, a) == 0)
      assert(hw_ipfilter_match(f, peer) == hw_ipfilter_match_addr(f, a));
  }
  hw_ipfilter_free(f);
  free(buf);
  return 0;
}
