-- Bench (issue 5): every order parks at a mid-cycle webhook matched on
-- order_id; each status update resumes it (and it stays parked).
local hw = require "hookwork"

return hw.cycle {
  name = "bench_park",
  steps = {
    hw.webhook { name = "new order", fields = { order_id = "string", amount = "number" } },
    hw.webhook { name = "status", match = "order_id", fields = { order_id = "string", status = "string" } },
    hw.step { name = "note", run = function(tx) tx.data.last_status = tx.data.status end },
  },
}
