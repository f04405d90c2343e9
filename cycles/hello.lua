-- A synchronous webhook: validates a name and answers with a greeting.
local hw = require "hookwork"

return hw.cycle {
  name = "hello",
  steps = {
    hw.webhook { name = "in", fields = { name = "string", times = "integer?" } },
    hw.step { name = "greet", run = function(tx)
      tx.data.greeting = string.rep("hello " .. tx.data.name .. "! ", tx.data.times or 1)
    end },
    hw.respond { name = "reply", body = function(tx)
      return { id = tx.id, greeting = tx.data.greeting }
    end },
  },
}
