/* fastpath: the webhook accept path in C, for the common case: a POST (or
 * any allowed method) of a JSON object to a running trigger whose features
 * are all in its C description (core/hook.h).
 * Token, method, state, IP filter, Content-Encoding, the JSON check and
 * field extraction (core/jscan.h), the store write (tx_insert with the raw
 * request and the data assembled from the body's own bytes), the wait for
 * the commit and the 202 all happen here with no Lua call; the run is then
 * handed to Lua (E.c_accepted) as a new run in the scheduler's ready
 * queue, resumed by the uv_check like every other (a synchronous trigger's
 * run gets the caller, to answer it itself).
 *
 * Every other request, and every request this path cannot accept (a
 * rejection of any kind: the Lua side composes those, byte for byte as
 * before), goes to the Lua path unchanged: the C path decides only
 * "accept" or "not mine".  A commit that fails after the write is answered
 * by E.c_refused (the same 503 as the Lua path, counted the same).
 *
 * Owns: each accepted request's state until its commit is decided.
 * Uses: hook, jscan, codec (inflate), store, http_server, scheduler. */
#ifndef HW_FASTPATH_H
#define HW_FASTPATH_H

#include "engine.h"

/* 0 when the request is taken (it will be answered); 1 when it is for the
 * Lua path (nothing done). */
int hw_fast_accept(hw_engine_t *e, hw_http_req_t *req, const char *ip);

#endif
