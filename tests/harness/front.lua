-- Harness fixture: links over "HTTP" with hw.url and looks up a customer.
local hw = require "hookwork"

return hw.cycle {
  name = "front",
  connector = "api",
  steps = {
    hw.webhook { name = "in", fields = { email = "string" } },
    hw.step { name = "lookup", run = function(tx)
      local r = hw.http.get("/customers", { query = { email = tx.data.email, active = "yes" } })
      tx.data.customer = r.json
    end },
    hw.step { name = "forward", run = function(tx)
      local r = hw.http.post(hw.url("back", "in"), { json = { email = tx.data.email } })
      tx.data.forwarded = r.status
      tx.data.url = hw.url("back", "in")
    end },
    hw.respond { name = "reply", body = function(tx)
      return { customer = tx.data.customer, forwarded = tx.data.forwarded, url = tx.data.url }
    end },
  },
}
