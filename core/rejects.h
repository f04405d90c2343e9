/* rejects: the door's plainest rejections answered by the C accept path
 * (core/fastpath.c) with no Lua call: 404 for a token no webhook has, and
 * for a webhook without `cors`, 405 for a method it does not allow, 503
 * when its cycle is stopped, 403 when the client fails its IP filter.
 * Answers are the bytes answers.lua gives (checked by the e2e tests
 * against HOOKWORK_FAST_ACCEPT=0); what the Lua path records for each (the
 * webhook and rejection metrics, the rejection log line and the console's
 * list) is queued here and recorded by the Lua side in batches
 * (core.c_rejections(), drained at each tick and before metrics or the
 * rejection list are read).
 *
 * Owns: the queue of records not yet handed to Lua (bounded: when full, or
 * for a name the answer cannot carry as is, the request goes to the Lua
 * path).  Uses: hook (the description), http_server (answers). */
#ifndef HW_REJECTS_H
#define HW_REJECTS_H

#include "engine.h"

/* For a request to /hooks/TOKEN[/] whose webhook is h (NULL: no webhook
 * has TOKEN): 0 when answered here, 1 when it is not a rejection this
 * module answers (nothing done). */
int hw_rejects_try(hw_engine_t *e, hw_http_req_t *req, const hw_hook_t *h,
                   const char *ip);

/* core.c_rejections() -> { {cycle, step, status, reason, ip, time}, ... }
 * (cycle and step nil for an unknown token), emptying the queue. */
int hw_rejects_lua_drain(lua_State *L);

void hw_rejects_free(hw_engine_t *e);

#endif
