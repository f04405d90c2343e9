-- Bench (issue 2): fire-and-forget webhook, one trivial step.
local hw = require "hookwork"

return hw.cycle {
  name = "bench_ff",
  steps = {
    hw.webhook { name = "in", fields = { order_id = "string", amount = "number" } },
    hw.step { name = "touch", run = function(tx) tx.data.seen = true end },
  },
}
