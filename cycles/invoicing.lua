-- cycles/invoicing.lua
local hw = require "hookwork"

return hw.cycle {
  connector = "shop",
  steps = {
    hw.webhook { name = "in", fields = { order_id = "string", total = "number" } },
    hw.request { name = "invoice", method = "POST", url = "/invoices",
                 json = function(tx) return { order = tx.data.order_id, total = tx.data.total } end,
                 fail_on_status = true },
  },
}
