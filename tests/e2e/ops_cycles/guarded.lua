local hw = require "hookwork"
return hw.cycle {
  name = "guarded",
  steps = {
    hw.webhook { name = "in" },
    hw.step { name = "boom", run = function(tx) error("kaboom " .. tostring(tx.data.n)) end,
              on_error = "handle" },
    hw.step { name = "skipped", run = function(tx) tx.data.skipped = true end },
    hw.step { name = "handle", run = function(tx) tx.data.caught = tx.error end },
  },
}
