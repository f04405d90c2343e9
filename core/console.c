/* console: serves the embedded web console (see console.h). */
#include "console.h"

#include <string.h>

/* The page only talks to its own origin; no inline script or style, no
 * frames, no plugins.  Inline SVG built with DOM calls is not a load. */
#define CSP                                                                 \
  "Content-Security-Policy: default-src 'self'; script-src 'self'; "        \
  "style-src 'self'; img-src 'self'; connect-src 'self'; "                  \
  "object-src 'none'; base-uri 'none'; form-action 'none'; "                \
  "frame-ancestors 'none'"

const hw_console_asset_t *hw_console_find(const char *path) {
  int i;

  if (strcmp(path, "/index.html") == 0)
    path = "/";
  for (i = 0; i < hw_console_nassets; i++)
    if (strcmp(hw_console_assets[i].path, path) == 0)
      return &hw_console_assets[i];
  return NULL;
}

int hw_console_owns(const char *path) {
  return strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0 ||
         strncmp(path, "/console/", 9) == 0 || strcmp(path, "/console") == 0;
}

/* If-None-Match may list several tags, or be "*". */
static int etag_matches(const char *inm, const char *etag) {
  size_t n = strlen(etag);
  const char *p;

  if (inm == NULL)
    return 0;
  if (strcmp(inm, "*") == 0)
    return 1;
  for (p = strstr(inm, etag); p != NULL; p = strstr(p + 1, etag)) {
    /* a weak validator W/"x" matches too (weak comparison, RFC 9110) */
    char after = p[n];
    if (after == '\0' || after == ',' || after == ' ')
      return 1;
  }
  return 0;
}

void hw_console_serve(hw_http_req_t *req) {
  const hw_console_asset_t *a = hw_console_find(req->path);
  char etag_line[96];
  const char *headers[] = {CSP,
                           "X-Content-Type-Options: nosniff",
                           "Referrer-Policy: no-referrer",
                           "Cache-Control: no-cache",
                           etag_line,
                           NULL,
                           NULL};
  static const char not_found[] = "{\"error\":\"not found\"}";
  static const char use_get[] = "{\"error\":\"use GET\"}";

  if (a == NULL) {
    headers[4] = NULL;
    hw_http_respond(req, 404, "application/json", headers, not_found,
                    sizeof not_found - 1);
    return;
  }
  if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
    headers[4] = "Allow: GET, HEAD";
    hw_http_respond(req, 405, "application/json", headers, use_get,
                    sizeof use_get - 1);
    return;
  }
  if (strlen(a->etag) + 7 > sizeof etag_line) { /* generated; never */
    headers[4] = NULL;
  } else {
    strcpy(etag_line, "ETag: ");
    strcat(etag_line, a->etag);
  }
  if (etag_matches(hw_http_req_header(req, "if-none-match"), a->etag)) {
    hw_http_respond(req, 304, NULL, headers, NULL, 0);
    return;
  }
  hw_http_respond(req, 200, a->ctype, headers, (const char *) a->data,
                  a->len);
}
