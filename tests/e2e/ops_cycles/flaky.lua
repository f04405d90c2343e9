local hw = require "hookwork"
return hw.cycle {
  name = "flaky",
  steps = {
    hw.webhook { name = "in", fields = { id = "string" } },
    hw.request { name = "push", method = "POST", url = "http://127.0.0.1:9/push",
                 json = function(tx) return { id = tx.data.id } end, fail_on_status = true,
                 retry = { attempts = 3, delays = { 10, 60 } } },
    hw.step { name = "done", run = function(tx) tx.data.done = true end },
  },
}
