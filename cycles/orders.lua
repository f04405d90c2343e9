-- Fire-and-forget orders that park until their status changes.
local hw = require "hookwork"

return hw.cycle {
  name = "orders",
  connector = "shop",
  steps = {
    hw.webhook { name = "new order",
                 fields = { order_id = "string", amount = "number",
                            ["customer.email"] = "string?" } },
    hw.decision { name = "big?", test = function(tx) return tx.data.amount > 100 end,
                  on_false = "stop" },
    hw.map { name = "shape", fields = { total = "amount", email = "customer.email" } },
    hw.webhook { name = "status", match = "order_id", ip_filtered = true },
    hw.decision { name = "despatched?",
                  test = function(tx) return tx.data.status == "Despatched" end },
    hw.step { name = "note", run = function(tx) tx.log("order " .. tx.data.order_id .. " despatched") end },
  },
}
