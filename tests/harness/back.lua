-- Harness fixture: the link target, with an IP-filtered webhook and a raw one.
local hw = require "hookwork"

return hw.cycle {
  name = "back",
  connector = "api",
  steps = {
    hw.webhook { name = "in", ip_filtered = true },
    hw.step { name = "note", run = function(tx) tx.data.seen = true end },
  },
}
