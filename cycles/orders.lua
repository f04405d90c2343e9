-- cycles/orders.lua
local hw = require "hookwork"

return hw.cycle {
  name = "orders",            -- defaults to the file name without .lua
  connector = "shop",         -- defaults to "default" (no settings)
  autostart = true,           -- the default
  sync_timeout = 10,          -- seconds a synchronous caller waits (default 30)
  steps = {
    hw.webhook { name = "new order",
                 fields = { order_id = "string", amount = "number",
                            ["customer.email"] = "string?" } },
    hw.step { name = "enrich", run = function(tx)
      local r = hw.http.get("/customers/" .. tx.data.order_id)
      if r.status ~= 200 then error("customer lookup: status " .. r.status, 0) end
      tx.data.customer_name = r.json.name
    end },
    hw.decision { name = "big?", test = function(tx) return tx.data.amount > 100 end,
                  on_false = "stop" },
    hw.map { name = "shape", fields = { total = "amount", email = "customer.email" } },
    hw.respond { name = "reply", status = 200,
                 body = function(tx) return { id = tx.id, total = tx.data.total } end },
    hw.webhook { name = "status", match = "order_id", ip_filtered = true,
                 fields = { order_id = "string", status = "string" } },
    hw.decision { name = "despatched?",
                  test = function(tx) return tx.data.status == "Despatched" end },
    hw.request { name = "tell erp", method = "POST", url = "/erp/despatched",
                 json = function(tx) return { order = tx.data.order_id } end },
    hw.link { name = "to invoicing", cycle = "invoicing", hook = "in",
              body = function(tx) return { order_id = tx.data.order_id, total = tx.data.total } end },
  },
}
