-- Bench (issue 11): as bench_door.lua, with the webhook verified.
local hw = require "hookwork"

return hw.cycle {
  name = "bench_door_github",
  steps = {
    hw.webhook { name = "signed", verify = hw.verify.github { secret = hw.secret("BENCH_GITHUB_SECRET") } },
    hw.step { name = "touch", run = function(tx) tx.data.seen = true end },
  },
}
