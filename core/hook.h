/* hook: the C-side description of every webhook, compiled from the Lua
 * registry at load, at hot reload and whenever what it holds changes
 * (cycle start/stop, connector PUT): token -> cycle, step, state, methods,
 * whether it is a trigger the C accept path may take (and if synchronous)
 * (core/fastpath.c), its IP filter and its compiled `fields`.
 *
 * Owns: the table (one per engine, e->hooks), its strings and field specs,
 * and a registry reference that keeps the Lua IP filters it points to
 * alive until the next compile.  Uses: ipfilter (matching), Lua (reading
 * the list loader.lua hands over).
 *
 * Lua side: core.hooks_set(list) replaces the table, where list holds one
 * entry per webhook: {token, cycle, step, running, methods = {"POST",...},
 * fast, sync, cors, ip_filtered, filter (a core.ipfilter or nil), fields = {{name,
 * type, optional}, ...} or nil, verify, dedupe (the step's compiled
 * tables: their C lists and specs are borrowed, kept alive by the list)}.
 * core.accept_paths() -> c, c_rejected, lua: requests accepted by the C
 * path, rejected by it (core/rejects.c), and webhook requests handed to
 * the Lua path. */
#ifndef HW_HOOK_H
#define HW_HOOK_H

#include "dedupe.h"
#include "ipfilter.h"
#include "verify.h"

#include <lua.h>
#include <stddef.h>

enum { HW_FT_STRING, HW_FT_NUMBER, HW_FT_INTEGER, HW_FT_BOOLEAN,
       HW_FT_OBJECT, HW_FT_ARRAY, HW_FT_ANY };

#define HW_HOOK_MAX_SEGS 16

typedef struct hw_field_s {
  const char *segs[HW_HOOK_MAX_SEGS]; /* the name split at '.' */
  size_t lens[HW_HOOK_MAX_SEGS];
  int nseg;
  int type;     /* HW_FT_* */
  int optional;
} hw_field_t;

typedef struct hw_hook_s {
  char *token, *cycle, *step;
  int running;       /* the cycle's state is "running" */
  unsigned methods;  /* bit per method (hw_hook_method_bit) */
  int fast;          /* a trigger whose every feature the C path has */
  int cors;          /* `cors` given: its answers are the Lua path's */
  int sync;          /* a `respond` follows: the caller waits for the run */
  int ip_filtered;
  const hw_ipfilter_t *filter; /* the connector's, NULL when it has none */
  int has_spec;      /* `fields` given (else every top-level member) */
  hw_field_t *fields; /* sorted by path, segment by segment */
  int nfields;
  const hw_verify_t *verify;       /* compiled `verify`, or NULL */
  const hw_dedupe_spec_t *dedupe;  /* compiled `dedupe`, or NULL */
} hw_hook_t;

typedef struct hw_hooks_s hw_hooks_t;

/* The hook of a token (n bytes), or NULL. */
const hw_hook_t *hw_hooks_find(const hw_hooks_t *t, const char *token,
                               size_t n);
/* The bit of a method name, 0 for one no webhook can allow. */
unsigned hw_hook_method_bit(const char *method);
void hw_hooks_free(hw_hooks_t *t);

/* Counters of the two accept paths (core.accept_paths). */
typedef struct hw_accept_stats_s {
  unsigned long long c_path, c_rejected, lua_path;
} hw_accept_stats_t;

typedef struct hw_rejects_s hw_rejects_t; /* rejects.c */

/* Adds hooks_set and accept_paths to the core table on top of L.  hooks
 * and stats live in the engine (e->hooks, e->accept_stats). */
void hw_hook_fns(lua_State *L, void *engine);

#endif
