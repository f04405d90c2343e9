-- answers: every answer the webhook listener gives a caller, in one table,
-- so a status code and its body are decided in one place.  Each function
-- returns status, body, headers: body is a table (sent as JSON), a
-- string (sent as-is with Content-Type application/json) or nil (empty,
-- no Content-Type); headers is a list of extra "Name: value" lines or nil.
-- Callers send them with callers.send.  Not here: the answers a cycle
-- gives itself (`respond`, kept and replayed for a status URL or a
-- duplicate), the server's own 400/408/413/431/503/505 (core/http_server.c)
-- and the admin API's answers (admin.lua, ops.lua).
--
--   case                         status  body
--   accepted(tx)                 202     {"accepted":true,"transaction":TX}
--   accepted_all(ids)            202     {accepted, transactions = [TX...]}  (pick = "all")
--   buffered()                   202     {"accepted":true,"buffered":true}   (kept by `early`)
--   duplicate(tx)                202     {"accepted":true,"transaction":TX,"duplicate":true}
--   stored_at_shutdown(tx)       202     {accepted, transaction, note}
--   handed_over(tx, url)         202     {accepted, transaction, status_url} + Location
--   status_running()             202     {state = "running"}  (status URL, run not done)
--   preflight(headers)           204     none; the CORS Access-Control-Allow-* headers
--   sync_state(tx, state)        200     {transaction, state}  (sync run ended, no respond)
--   duplicate_state(tx, state)   200     {transaction, state, duplicate}
--   failed(tx, step, msg)        500     {error = "step 'S' failed: MSG", transaction}
--   duplicate_failed(tx)         500     {error, transaction, duplicate}
--   duplicate_running(tx)        409     {error, transaction, duplicate}
--   timeout(secs, tx)            504     {error = "no answer within the sync_timeout ...", transaction}
--   internal()                   500     {error = "internal error"}
--   dedupe_failed()              500     {error = "dedupe key function failed"}
--   bad_request(msg)             400     {error = MSG}
--   unauthorized(msg, challenge) 401     {error = MSG} + WWW-Authenticate when the scheme has one
--   forbidden(ip)                403     {error = "address IP is not allowed for this webhook"}
--   not_found(msg)               404     {error = MSG}  (unknown_webhook(): "unknown webhook")
--   method_not_allowed(m, allow) 405     {error = "method M not allowed"} + Allow
--   conflict(msg)                409     {error = MSG}
--   too_large(max)               413     {error = "body over the limit of N bytes once decoded"}
--   unsupported(msg)             415     {error = MSG}
--   stopped(cycle)               503     {error = "cycle 'C' is stopped"}
--   store_unavailable(reason)    503     {error = "store unavailable: REASON"} + Retry-After: 1
--   busy(msg)                    503     {error = MSG} + Retry-After: 1  (backlog, kept requests)
--   shutting_down()              503     {error = "shutting down"} + Retry-After: 1
--   rejected(status, msg, hdrs)  any     {error = MSG}: a status decided by a lower layer (fields)
--
-- Rejections carry their message in body.error, which is also what the
-- rejection log (ops.reject) records.
local Ans = {}

local function err(status, msg, headers) return status, { error = msg }, headers end
local RETRY = { "Retry-After: 1" }
local function retry() return { RETRY[1] } end

function Ans.accepted(tx)
  return 202, '{"accepted":true,"transaction":"' .. tostring(tx) .. '"}'
end

function Ans.accepted_all(ids) return 202, { accepted = true, transactions = ids } end

function Ans.buffered() return 202, '{"accepted":true,"buffered":true}' end

function Ans.duplicate(tx)
  return 202, '{"accepted":true,"transaction":"' .. tostring(tx) .. '","duplicate":true}'
end

function Ans.stored_at_shutdown(tx)
  return 202, { accepted = true, transaction = tx and tostring(tx),
                note = "the engine is stopping; the run goes on after its restart" }
end

function Ans.handed_over(tx, url)
  return 202, { accepted = true, transaction = tostring(tx), status_url = url }, { "Location: " .. url }
end

function Ans.status_running() return 202, { state = "running" } end

function Ans.preflight(headers) return 204, nil, headers end

function Ans.sync_state(tx, state) return 200, { transaction = tostring(tx), state = state } end

function Ans.duplicate_state(tx, state)
  return 200, { transaction = tostring(tx), state = state, duplicate = true }
end

function Ans.failed(tx, step, msg)
  return 500, { error = string.format("step '%s' failed: %s", step, msg), transaction = tostring(tx) }
end

function Ans.duplicate_failed(tx)
  return 500, { error = "the first delivery of this request failed", transaction = tostring(tx),
                duplicate = true }
end

function Ans.duplicate_running(tx)
  return 409, { error = "the first delivery of this request is still running",
                transaction = tostring(tx), duplicate = true }
end

function Ans.timeout(secs, tx)
  return 504, { error = string.format("no answer within the sync_timeout of %gs; the cycle goes on", secs),
                transaction = tx and tostring(tx) }
end

function Ans.internal() return err(500, "internal error") end
function Ans.dedupe_failed() return err(500, "dedupe key function failed") end
function Ans.bad_request(msg) return err(400, msg) end

function Ans.unauthorized(msg, challenge)
  return err(401, msg, challenge and { "WWW-Authenticate: " .. challenge } or nil)
end

function Ans.forbidden(ip)
  return err(403, string.format("address %s is not allowed for this webhook", ip))
end

function Ans.not_found(msg) return err(404, msg) end
function Ans.unknown_webhook() return err(404, "unknown webhook") end

function Ans.method_not_allowed(method, allow)
  return err(405, "method " .. method .. " not allowed", allow and { "Allow: " .. allow } or nil)
end

function Ans.conflict(msg) return err(409, msg) end

function Ans.too_large(max)
  return err(413, string.format("body over the limit of %d bytes once decoded", max))
end

function Ans.unsupported(msg) return err(415, msg) end

function Ans.stopped(cycle) return err(503, string.format("cycle '%s' is stopped", cycle)) end

function Ans.store_unavailable(reason)
  return err(503, "store unavailable: " .. tostring(reason), retry())
end

function Ans.busy(msg) return err(503, msg, retry()) end
function Ans.shutting_down() return err(503, "shutting down", retry()) end
function Ans.rejected(status, msg, headers) return err(status, msg, headers) end

return Ans
