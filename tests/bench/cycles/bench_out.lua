-- Bench (issue 3): fan-out, one outbound POST per transaction to a local
-- nginx answering 200.  The target comes from the environment so the bench
-- script can pick a free port (not a HOOKWORK_* name: the sandbox's
-- os.getenv hides those, and every call would go to the default port).
local hw = require "hookwork"
local target = os.getenv("BENCH_OUT_UPSTREAM") or "http://127.0.0.1:18090/ok"

return hw.cycle {
  name = "bench_out",
  steps = {
    hw.webhook { name = "in", fields = { order_id = "string", amount = "number" } },
    hw.request { name = "notify", method = "POST", url = target, timeout = 30,
                 json = function(tx) return { order = tx.data.order_id, amount = tx.data.amount } end },
  },
}
