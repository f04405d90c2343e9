-- Bench (issue 4): synchronous webhook, one Lua step and a respond step
-- whose small JSON body is computed from the request (the same flow as the
-- Node-RED peer: http in -> function -> http response).
local hw = require "hookwork"

return hw.cycle {
  name = "bench_sync",
  steps = {
    hw.webhook { name = "in", fields = { order_id = "string", amount = "number" } },
    hw.step { name = "map", run = function(tx)
      tx.data.total = tx.data.amount * 2
    end },
    hw.respond { name = "reply", status = 200, body = function(tx)
      return { ok = true, id = tx.data.order_id, total = tx.data.total }
    end },
  },
}
