-- cycles/shipments_test.lua
-- Tests for shipments.lua: early callbacks, carried data, the end of the wait.
local t = require "hookwork.test"

local function book() t.mock("POST", "/api/carrier/book", { status = 201 }) end

t.case("callbacks before and after the park all arrive, in order, building on each other", function()
  book()
  t.mock("POST", "/api/orders/delivered", { status = 204 })
  -- the carrier is faster than the booking: its first callback comes first
  local early = t.post("shipments", "tracking", { reference = "SO-1", status = "Collected" }, { wait = false })
  t.eq(early.status, 202)
  t.eq(early.json, { accepted = true, buffered = true })
  local res = t.post("shipments", "order", { order_id = "SO-1" })
  local id = res.json.transaction
  t.eq(t.post("shipments", "tracking", { reference = "SO-1", status = "Despatched", tracking_no = "TRK9" }).status, 202)
  t.eq(t.post("shipments", "tracking", { reference = "SO-1", status = "Delivered" }).status, 202)
  local sent = t.requests("POST", "/api/orders/delivered")
  t.eq(#sent, 1)
  t.eq(sent[1].json, { order = "SO-1", tracking_no = "TRK9", log = { "Collected", "Despatched", "Delivered" } })
  local tx = t.transaction(id)
  t.eq(tx.state, "completed")
  t.eq(tx.step, "done")
  -- the wait has ended
  local after = t.post("shipments", "tracking", { reference = "SO-1", status = "Delivered" })
  t.eq(after.status, 202)
  t.eq(after.json.buffered, true, "a later callback is kept for a new park, not matched")
end)

t.case("a kept callback whose window runs out is dropped, never delivered", function()
  book()
  t.eq(t.post("shipments", "tracking", { reference = "SO-2", status = "Collected" }, { wait = false }).status, 202)
  t.advance(601)
  local res = t.post("shipments", "order", { order_id = "SO-2" })
  local tx = t.transaction(res.json.transaction)
  t.eq(tx.state, "waiting")
  t.eq(tx.runs, 1, "nothing delivered")
end)

t.case("two orders waiting on one reference: pick = only refuses to guess", function()
  book()
  t.post("shipments", "order", { order_id = "SO-3" })
  t.post("shipments", "order", { order_id = "SO-3" })
  local res = t.post("shipments", "tracking", { reference = "SO-3", status = "Collected" })
  t.eq(res.status, 409)
  t.eq(res.json.error, "2 transactions wait with reference = SO-3")
end)

t.case("a callback with a malformed field is refused and kept nowhere", function()
  book()
  local res = t.post("shipments", "tracking", { reference = "SO-4", status = 7 }, { wait = false })
  t.eq(res.status, 400)
  local tx = t.transaction(t.post("shipments", "order", { order_id = "SO-4" }).json.transaction)
  t.eq(tx.runs, 1)
end)
