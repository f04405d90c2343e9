-- Harness fixture: echoes what the request carried.
local hw = require "hookwork"

return hw.cycle {
  name = "raw",
  steps = {
    hw.webhook { name = "in", methods = { "POST", "PUT" } },
    hw.respond { name = "echo", body = function(tx)
      return { body = tx.request.body, ctype = tx.request.headers["content-type"],
               sig = tx.request.headers["x-sig"], method = tx.request.method,
               name = tx.data.name }
    end },
  },
}
