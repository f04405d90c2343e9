-- Bench (issue 11): the same fire-and-forget webhook twice, one with
-- verify = github, one without (one trivial step each).
local hw = require "hookwork"

return hw.cycle {
  name = "bench_door",
  steps = {
    hw.webhook { name = "plain" },
    hw.step { name = "touch", run = function(tx) tx.data.seen = true end },
  },
}
