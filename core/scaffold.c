/* scaffold: `hookwork init [DIR]` writes a connector, a cycle, the cycle's
 * test and a .luarc.json (lua-language-server) into DIR, so that
 * `hookwork check`, `hookwork test` and `hookwork run` work on it at once.
 *
 * Owns: the template texts below.  Uses: POSIX file calls only.
 */
#include "scaffold.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char connector_lua[] =
  "-- A connector: settings its cycles share (allowed IPs for ip_filtered\n"
  "-- webhooks, the base URL and headers of outbound calls).\n"
  "local hw = require \"hookwork\"\n"
  "\n"
  "return hw.connector {\n"
  "  name = \"crm\",\n"
  "  allowed_ips = { \"127.0.0.1\", \"::1\" },\n"
  "  base_url = \"http://127.0.0.1:9000\",\n"
  "  headers = { [\"X-Api-Key\"] = os.getenv(\"CRM_KEY\") or \"demo-key\" },\n"
  "}\n";

static const char cycle_lua[] =
  "-- A cycle: a new contact is looked up in the CRM, created when unknown,\n"
  "-- and the caller is answered at once (a synchronous webhook).\n"
  "local hw = require \"hookwork\"\n"
  "\n"
  "return hw.cycle {\n"
  "  name = \"contacts\",\n"
  "  connector = \"crm\",\n"
  "  steps = {\n"
  "    hw.webhook { name = \"new contact\",\n"
  "                 fields = { email = \"string\", name = \"string?\" } },\n"
  "    hw.request { name = \"lookup\", method = \"GET\", url = \"/contacts\",\n"
  "                 query = function(tx) return { email = tx.data.email } end },\n"
  "    hw.decision { name = \"unknown?\", on_false = \"reply\",\n"
  "                  test = function(tx) return tx.data.lookup.status == 404 end },\n"
  "    hw.request { name = \"create\", method = \"POST\", url = \"/contacts\",\n"
  "                 json = function(tx)\n"
  "                   return { email = tx.data.email, name = tx.data.name }\n"
  "                 end },\n"
  "    hw.respond { name = \"reply\",\n"
  "                 status = function(tx) return tx.data.create and 201 or 200 end,\n"
  "                 body = function(tx)\n"
  "                   return { id = tx.id, created = tx.data.create ~= nil }\n"
  "                 end },\n"
  "  },\n"
  "}\n";

static const char cycle_test_lua[] =
  "-- Tests for contacts.lua: run with `hookwork test` in this directory.\n"
  "local t = require \"hookwork.test\"\n"
  "\n"
  "t.case(\"a known contact is answered 200\", function()\n"
  "  t.mock(\"GET\", \"/contacts?email=ada@example.com\",\n"
  "         { status = 200, json = { id = 7 } })\n"
  "  local res = t.post(\"contacts\", \"new contact\", { email = \"ada@example.com\" })\n"
  "  t.eq(res.status, 200)\n"
  "  t.eq(res.json.created, false)\n"
  "end)\n"
  "\n"
  "t.case(\"an unknown contact is created\", function()\n"
  "  t.mock(\"GET\", \"/contacts?email=bob@example.com\", { status = 404 })\n"
  "  t.mock(\"POST\", \"/contacts\", { status = 201, json = { id = 8 } })\n"
  "  local res = t.post(\"contacts\", \"new contact\",\n"
  "                     { email = \"bob@example.com\", name = \"Bob\" })\n"
  "  t.eq(res.status, 201)\n"
  "  t.eq(res.json.created, true)\n"
  "  t.eq(#t.requests(\"POST\", \"/contacts\"), 1)\n"
  "end)\n"
  "\n"
  "t.case(\"a contact without email is refused\", function()\n"
  "  t.eq(t.post(\"contacts\", \"new contact\", { name = \"Eve\" }).status, 400)\n"
  "end)\n";

/* The editor configuration: lua-language-server reads the hw API's type
 * definitions from the installed (or repository) types directory. */
static int write_luarc(char *buf, size_t len, const char *types_dir) {
  int n = snprintf(buf, len,
                   "{\n"
                   "  \"runtime.version\": \"Lua 5.4\",\n"
                   "  \"workspace.library\": [\"%s\"],\n"
                   "  \"workspace.checkThirdParty\": false,\n"
                   "  \"diagnostics.disable\": [\"lowercase-global\"]\n"
                   "}\n",
                   types_dir);
  return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

static int mkdirs(const char *dir) {
  char path[PATH_MAX];
  size_t i, n = strlen(dir);

  if (n == 0 || n >= sizeof path)
    return -ENAMETOOLONG;
  memcpy(path, dir, n + 1);
  for (i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0')
      continue;
    path[i] = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      return -errno;
    path[i] = i < n ? '/' : '\0';
  }
  return 0;
}

typedef struct {
  const char *name;
  const char *text;
} tmpl_t;

static int write_new(const char *dir, const tmpl_t *t) {
  char path[PATH_MAX];
  size_t len = strlen(t->text);
  int fd, rc = 0;

  snprintf(path, sizeof path, "%s/%s", dir, t->name);
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    rc = -errno;
    fprintf(stderr, "hookwork init: %s: %s\n", path, strerror(errno));
    return rc;
  }
  if (write(fd, t->text, len) != (ssize_t) len)
    rc = errno ? -errno : -EIO;
  if (close(fd) != 0 && rc == 0)
    rc = -errno;
  if (rc != 0)
    fprintf(stderr, "hookwork init: %s: %s\n", path, strerror(-rc));
  else
    printf("  created %s\n", path);
  return rc;
}

int hw_scaffold_init(const char *dir, const char *types_dir) {
  static char luarc[PATH_MAX + 512];
  const tmpl_t files[] = {
    {"crm.lua", connector_lua},
    {"contacts.lua", cycle_lua},
    {"contacts_test.lua", cycle_test_lua},
    {".luarc.json", luarc},
  };
  const size_t nfiles = sizeof files / sizeof files[0];
  char path[PATH_MAX];
  struct stat sb;
  size_t i;
  int rc;

  if ((rc = write_luarc(luarc, sizeof luarc, types_dir)) != 0)
    return rc;
  /* all or nothing: refuse before writing anything */
  for (i = 0; i < nfiles; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i].name);
    if (lstat(path, &sb) == 0) {
      fprintf(stderr, "hookwork init: %s already exists; nothing written\n",
              path);
      return -EEXIST;
    }
  }
  if ((rc = mkdirs(dir)) != 0) {
    fprintf(stderr, "hookwork init: %s: %s\n", dir, strerror(-rc));
    return rc;
  }
  for (i = 0; i < nfiles; i++)
    if ((rc = write_new(dir, &files[i])) != 0)
      return rc;
  return 0;
}
