-- Tests for orders.lua: big orders park until their status changes.
local t = require "hookwork.test"

t.case("a big order parks and resumes on its status", function()
  local res = t.post("orders", "new order", { order_id = "A1", amount = 500 })
  t.eq(res.status, 202)
  local id = res.json.transaction
  t.eq(t.transaction(id).state, "waiting")
  t.eq(t.post("orders", "status", { order_id = "A1", status = "Packed" }).status, 202)
  t.eq(t.post("orders", "status", { order_id = "A1", status = "Despatched" }).status, 202)
  local tx = t.transaction(id)
  t.eq(tx.state, "waiting")
  t.eq(tx.data.status, "Despatched")
  t.eq(tx.runs, 3)
end)

t.case("small orders stop at the decision", function()
  local res = t.post("orders", "new order", { order_id = "A2", amount = 5 })
  local tx = t.transaction(res.json.transaction)
  t.eq(tx.state, "completed")
  t.eq(tx.step, "big?")
end)

t.case("status updates only come from allowed addresses", function()
  t.post("orders", "new order", { order_id = "A3", amount = 500 })
  local res = t.post("orders", "status", { order_id = "A3", status = "Packed" }, { ip = "10.9.9.9" })
  t.eq(res.status, 403)
end)
