/* dedupe: the webhook door's `dedupe` option in C (SPEC "The door"): the
 * key of a request (a header, a JSON body field, the verify scheme's
 * delivery id), the lookup of an earlier delivery with that key (the keys
 * accepted but not committed yet, then the store's `dedupe` table), the key
 * written in the same commit as its request, and the first delivery's
 * answer.  Keys from a Lua function stay in dedupe.lua, which is otherwise a
 * binding over this module; the C accept path calls it directly.
 *
 * Owns: the overlay of keys whose rows readers cannot see yet (each entry
 * dropped once the store has committed past its writes, so it is as large
 * as the store's backlog of uncommitted writes; at most
 * HW_DEDUPE_MAX_OVERLAY entries).
 * Uses: store.h (dedupe_put, dedupe_get, dedupe_answer, dedupe_due,
 * dedupe_purge), crypto.c (long keys stored as their SHA-256), jscan.c.
 * Loop thread only. */
#ifndef HW_DEDUPE_H
#define HW_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "verify.h"

#define HW_DEDUPE_MAX_KEY 200 /* longer keys are stored as "sha256:HEX" */
#define HW_DEDUPE_KEY_BUF 208 /* room for any key this module produces */
#define HW_DEDUPE_MAX_OVERLAY 200000
#define HW_DEDUPE_WINDOW 86400.0

enum { HW_DK_HEADER, HW_DK_FIELD, HW_DK_DELIVERY };

typedef struct hw_dedupe_spec_s hw_dedupe_spec_t;
typedef struct hw_dedupe_s hw_dedupe_t;

/* A key source: header (lower-cased here), field ("event.id"), or the
 * delivery id of the first scheme in `verify` that has one (NULL verify or
 * none: -EINVAL).  window in seconds. */
int hw_dedupe_spec_new(int kind, const char *name, const hw_verify_t *verify,
                       double window, hw_dedupe_spec_t **out);
void hw_dedupe_spec_free(hw_dedupe_spec_t *sp);
double hw_dedupe_spec_window(const hw_dedupe_spec_t *sp);

/* The request's key into key[HW_DEDUPE_KEY_BUF] (*klen).  json is the body
 * as JSON text when the body was read as JSON (after Content-Encoding),
 * else NULL.  Returns 1 with a key, 0 when the request has none (it is not
 * deduplicated), -ENOTSUP when the key is a body field and the body is not
 * JSON (a form: the caller reads its own decoded fields, and hands the
 * value to hw_dedupe_key_of). */
int hw_dedupe_key(const hw_dedupe_spec_t *sp, const hw_req_view_t *r,
                  const char *json, size_t jlen, char *key, size_t *klen);
/* A raw key value as a key: "" is no key (0), longer than
 * HW_DEDUPE_MAX_KEY becomes "sha256:HEX".  Returns 1 or 0. */
int hw_dedupe_key_of(const char *v, size_t n, char *key, size_t *klen);

int hw_dedupe_new(hw_dedupe_t **out);
void hw_dedupe_free(hw_dedupe_t *d);

/* An earlier delivery with this key. */
typedef struct hw_dedupe_hit_s {
  int64_t tx;
  uint64_t seq; /* its request's write (hw_store_await), 0 when stored */
  /* the first delivery's answer while not committed yet (status 0: none;
   * pointers valid until the next call into this module) */
  int status;
  const char *ctype, *headers, *body; /* headers: JSON array of "N: V" */
  size_t body_len;
} hw_dedupe_hit_t;

/* Looks the key up within its window at now: the overlay first, then the
 * store.  1 with *hit, 0 when none, negative on a store error. */
int hw_dedupe_find(hw_dedupe_t *d, hw_store_t *st, const char *cycle,
                   const char *step, const char *key, size_t klen, double now,
                   hw_dedupe_hit_t *hit);
/* Remembers an accepted request's key: queues its dedupe_put as a request's
 * write (dropped with the request's own if their batch fails) and keeps it
 * in the overlay.  *seq receives the write's sequence number. */
int hw_dedupe_note(hw_dedupe_t *d, hw_store_t *st, const char *cycle,
                   const char *step, const char *key, size_t klen, int64_t tx,
                   double window, double now, uint64_t *seq);
/* The request's commit failed: its key was not stored either. */
void hw_dedupe_forget(hw_dedupe_t *d, const char *cycle, const char *step,
                      const char *key, size_t klen, int64_t tx);
/* The answer a synchronous first delivery got (not 503/504): written to
 * the store and kept in the overlay until committed. */
int hw_dedupe_record(hw_dedupe_t *d, hw_store_t *st, const char *cycle,
                     const char *step, const char *key, size_t klen, int64_t tx,
                     int status, const char *ctype, const char *headers_json,
                     const char *body, size_t blen);
/* Drops the entries the store has committed past; with sweep, once a
 * second purges expired stored keys (a batch of at most 1000, only when
 * some are due; with several nodes only the sweeping node does). */
void hw_dedupe_tick(hw_dedupe_t *d, hw_store_t *st, double now, int sweep);
/* Entries in the overlay. */
size_t hw_dedupe_overlay_size(const hw_dedupe_t *d);

#endif
