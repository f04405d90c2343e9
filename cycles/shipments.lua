-- cycles/shipments.lua
-- A carrier pattern: an order is booked with a carrier, then the carrier's
-- status callbacks drive it until delivery.  The carrier answers fast, so
-- a callback may arrive before the booking call has returned (`early`);
-- each callback builds on what the earlier ones learned (`resume_with =
-- "latest"`); delivery ends the transaction (`hw.finish`).
local hw = require "hookwork"

return hw.cycle {
  name = "shipments",
  connector = "shop",
  steps = {
    hw.webhook { name = "order", fields = { order_id = "string" } },
    hw.request { name = "book", method = "POST", url = "/carrier/book",
                 json = function(tx) return { reference = tx.data.order_id } end },
    hw.step { name = "start log", run = function(tx) tx.data.log = {} end },
    -- the carrier calls back with its own field name, `reference`
    hw.webhook { name = "tracking", match = { request = "reference", transaction = "order_id" },
                 fields = { reference = "string", status = "string", tracking_no = "string?" },
                 early = 600, resume_with = "latest", pick = "only", expires = 30 * 86400 },
    hw.step { name = "log", run = function(tx)
      tx.data.log[#tx.data.log + 1] = tx.data.status
    end },
    hw.decision { name = "delivered?", test = function(tx) return tx.data.status == "Delivered" end,
                  on_false = "stop" },
    hw.request { name = "tell shop", method = "POST", url = "/orders/delivered",
                 json = function(tx)
                   return { order = tx.data.order_id, tracking_no = tx.data.tracking_no,
                            log = tx.data.log }
                 end },
    hw.finish { name = "done" },
  },
}
