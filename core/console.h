/* console: the web console's static assets, embedded in the binary.
 *
 * Owns: nothing at run time; the asset table is generated at build time from
 * console/ by console/embed.sh (build/.../console_assets.c).
 * Uses: http_server (to answer).
 *
 * The console is plain HTML, CSS and JS modules.  They hold no data, so they
 * are served without the admin token; everything they show comes from /api,
 * which stays protected.  Each answer carries a strong ETag (a hash of the
 * bytes, fixed at build time), Cache-Control: no-cache (revalidate, so an
 * upgraded binary is seen at once) and a Content-Security-Policy that allows
 * nothing from elsewhere.
 */
#ifndef HW_CONSOLE_H
#define HW_CONSOLE_H

#include <stddef.h>

#include "http_server.h"

typedef struct hw_console_asset_s {
  const char *path;  /* URL path: "/" or "/console/NAME" */
  const char *ctype; /* Content-Type */
  const char *etag;  /* quoted, e.g. "\"3f2a...\"" */
  const unsigned char *data;
  size_t len;
} hw_console_asset_t;

/* Generated: the table and its length. */
extern const hw_console_asset_t hw_console_assets[];
extern const int hw_console_nassets;

/* The asset served at path (query excluded), or NULL. */
const hw_console_asset_t *hw_console_find(const char *path);

/* 1 when path belongs to the console ("/" or under "/console/"): such
 * requests are answered by hw_console_serve, without the admin token. */
int hw_console_owns(const char *path);

/* Answers req (exactly once): the asset, 304 when If-None-Match matches,
 * 404 for an unknown console path, 405 for a method other than GET/HEAD. */
void hw_console_serve(hw_http_req_t *req);

#endif
