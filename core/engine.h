/* engine: the one engine struct that owns every module, and its life cycle
 * (start, serve, graceful stop).  No other global mutable state exists.
 *
 * Owns: the loop, the Lua state, the store, the outbound HTTP client, both
 * HTTP servers, the cycles-directory watcher, the tick timer, the signal
 * handlers and the run scheduler.
 */
#ifndef HW_ENGINE_H
#define HW_ENGINE_H

#include <stddef.h>
#include <uv.h>
#include <lua.h>

#include "http_client.h"
#include "http_server.h"
#include "hook.h"
#include "ipfilter.h"
#include "loopstat.h"
#include "reader.h"
#include "store.h"
#include "watcher.h"

#define HW_VERSION "0.1.0"

typedef struct hw_config_s {
  const char *cycles_dir;
  const char *data_dir;
  /* --store postgres://... (HOOKWORK_STORE): PostgreSQL instead of SQLite
   * in data_dir; NULL for SQLite.  node: this engine's name among several
   * (--node, HOOKWORK_NODE; default HOSTNAME:PORT of --listen), lease:
   * seconds before other nodes take its runs over (--lease, default 15) */
  const char *store_url;
  const char *node;
  double lease;
  const char *listen;      /* HOST:PORT */
  const char *admin;       /* HOST:PORT, NULL when no admin server */
  const char *public_url;  /* base of webhook URLs; NULL: from listen */
  size_t max_body;
  const char *trust_proxy[32];
  int ntrust;
  const char *admin_token; /* HOOKWORK_ADMIN_TOKEN or NULL */
  int admin_open;          /* --admin-open: no token needed off loopback */
  /* bounds and the outbound policy (docs/operations.md, "Limits") */
  const char *outbound_deny[64]; /* --outbound-deny CIDR */
  int ndeny;
  unsigned max_connections;  /* --max-connections: webhook connections */
  size_t max_body_buffer;    /* request-body bytes held, all connections */
  int max_runs;              /* runs in flight before webhooks get 503 */
  int no_fast_accept;        /* HOOKWORK_FAST_ACCEPT=0: Lua accept path only */
  long max_outbound;         /* outbound connections open at once */
  long outbound_pool;        /* idle keep-alive connections kept (0: auto) */
  size_t max_response;       /* ceiling of a call's max_response */
  size_t max_response_buffer;/* response bytes held, all outbound calls */
  unsigned read_timeout_ms;
  long step_budget;        /* Lua instructions per step */
  double grace;            /* seconds to let runs finish on SIGTERM */
  int mode;                /* HW_MODE_* */
  const char *lua_dir;
} hw_config_t;

enum { HW_MODE_RUN, HW_MODE_TEST, HW_MODE_CHECK };

typedef struct hw_run_s hw_run_t;
typedef struct hw_memacct_s hw_memacct_t;

/* The limits of one step (or one cycle file's top level): instructions
 * counted by the hook and by the pattern matcher, and whether an
 * allocation was refused.  Reset when the step's protected call starts and
 * cleared when it returns, in hw_sched_protect (scheduler.c) and
 * nowhere else; hw_lua_call does the same for a whole main-context call. */
struct hw_budget_s {
  long used;             /* instructions counted so far */
  int killed;            /* past the budget: every hook call raises again */
  int depth;             /* > 0 inside a step's protected call */
  size_t mem_hit;        /* the memory limit an allocation hit, or 0 */
  hw_memacct_t *scope;   /* main context: the account of the file loading */
};

typedef struct hw_budget_s hw_budget_t;

/* The Lua heap's accounting (lua_api.c): every allocation carries the
 * account it is charged to. */
typedef struct hw_luamem_s {
  size_t total;            /* bytes the Lua heap holds now */
  size_t limit;            /* HOOKWORK_LUA_MEMORY */
  size_t run_limit;        /* HOOKWORK_RUN_MEMORY */
  hw_memacct_t *acct;      /* charged now: a run's, a file load's, or NULL */
  void *refused;           /* the block of the last refused request ... */
  size_t refused_size;     /* ... and its size, 0 when none is pending */
  uint64_t allocs;         /* blocks allocated or grown, ever (/metrics) */
  hw_memacct_t *spare;     /* accounts done with, kept for the next run */
  int nspare;
} hw_luamem_t;

typedef struct hw_engine_s {
  uv_loop_t *loop;
  hw_config_t cfg;
  lua_State *L;
  int engine_ref;          /* registry ref of the Lua engine table */
  hw_store_t *store;
  hw_reader_t *reader;     /* admin reads, opened on first use */
  char reader_dir[1024];   /* the store it reads: directory or postgres:// URL */
  hw_hc_t *hc;
  hw_http_server_t *web;
  hw_http_server_t *admin;
  hw_watcher_t *watcher;
  hw_ipfilter_t *trusted;  /* --trust-proxy, NULL when none */
  hw_hooks_t *hooks;       /* the webhooks as the C accept path sees them */
  hw_accept_stats_t accepts; /* requests per accept path (C, Lua) */
  hw_rejects_t *rejects;   /* rejections answered in C, not yet recorded */
  hw_netpolicy_t *policy;  /* outbound address policy */
  struct hw_dedupe_s *dedupe; /* keys not committed yet (dedupe.c) */
  uv_check_t check;        /* drains the ready queue: the one resume site */
  uv_prepare_t prepare;    /* kicks the store before the loop blocks */
  hw_loopstat_t loopstat;  /* work per loop iteration (/metrics) */
  uv_idle_t idle;          /* keeps the loop spinning while runs are ready */
  uv_timer_t tick;         /* sync timeouts, expiry, shutdown progress */
  uv_signal_t sigint, sigterm;
  hw_run_t *ready_head, *ready_tail;
  hw_run_t *runs;          /* every live run (ready or waiting) */
  hw_run_t *current;       /* the run being resumed, else NULL */
  hw_run_t *pool;          /* finished runs kept for their threads */
  int npool;
  hw_budget_t main_budget; /* budget outside runs (loading, admin) */
  unsigned long serial;    /* last owner serial handed out */
  unsigned long main_serial; /* owner serial of the current main-context call */
  int lua_calls;           /* hw_lua_call nesting (test mode drives the loop) */
  hw_luamem_t mem;
  int nruns;
  int stopping;            /* 1: draining; 2: forced */
  double stop_deadline;    /* hw_mono() seconds */
  int exit_code;
  char public_base[512];   /* "http://host:port" of webhook URLs */
  char listen_host[256];
  int listen_port;
} hw_engine_t;

/* Parses HOST:PORT ("127.0.0.1:8080", "[::1]:8080", ":8080"). 0 or -EINVAL. */
int hw_parse_hostport(const char *s, char *host, size_t hostlen, int *port);

/* Builds the engine (store, Lua, cycles) without serving. 0 or negative,
 * with a message on stderr. */
int hw_engine_init(hw_engine_t *e, uv_loop_t *loop, const hw_config_t *cfg);
/* Starts the servers, watcher, signals and timers; recovers jobs. */
int hw_engine_serve(hw_engine_t *e);
/* Begins a graceful stop (also what SIGINT/SIGTERM do). */
void hw_engine_stop(hw_engine_t *e);
/* Starts the tick timer alone (test mode drives the loop from Lua). */
void hw_engine_tick_start(hw_engine_t *e);
/* For modes that never serve (check, test): closes what init opened. */
void hw_engine_close_handles(hw_engine_t *e);
/* Frees everything after the loop has run dry. */
void hw_engine_free(hw_engine_t *e);

double hw_now(void); /* wall clock, unix seconds: for stored times */
double hw_mono(void); /* monotonic seconds: for waiting (deadlines) */

/* admin.c */
void hw_admin_handle(hw_http_server_t *srv, hw_http_req_t *req, void *arg);

#endif
