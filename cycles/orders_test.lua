-- cycles/orders_test.lua
local t = require "hookwork.test"

t.case("a big order is answered, parks, and resumes on its status", function()
  t.mock("GET", "/api/customers/A1", { status = 200, json = { name = "Ada" } })
  local res = t.post("orders", "new order", { order_id = "A1", amount = 500 })
  t.eq(res.status, 200)
  t.eq(res.json, { id = res.json.id, total = 500 })
  t.eq(t.transaction(res.json.id).state, "waiting")

  t.mock("POST", "/api/erp/despatched", { status = 204 })
  t.mock("POST", "/api/invoices", { status = 201, json = { invoice = "I-1" } })
  local r2 = t.post("orders", "status", { order_id = "A1", status = "Despatched" })
  t.eq(r2.status, 202)
  t.eq(#t.requests("POST", "/api/erp/despatched"), 1)
  t.eq(t.requests("POST", "/api/erp/despatched")[1].json, { order = "A1" })

  local tx = t.transaction(res.json.id)
  t.eq(tx.state, "waiting")      -- still matchable after the resumed run
  t.eq(tx.runs, 2)
end)

t.case("small orders stop at the decision", function()
  t.mock("GET", "/api/customers/A2", { status = 200, json = { name = "Bo" } })
  local res = t.post("orders", "new order", { order_id = "A2", amount = 5 })
  t.eq(res.status, 200)
  t.eq(res.json.state, "completed")
  local tx = t.transaction(res.json.transaction)
  t.eq(tx.step, "big?")
end)

t.case("a failing lookup answers 500", function()
  t.mock("GET", "/api/customers/A3", { status = 404 })
  local res = t.post("orders", "new order", { order_id = "A3", amount = 500 })
  t.eq(res.status, 500)
  t.eq(res.json.error, "step 'enrich' failed: customer lookup: status 404")
end)

t.case("status updates come only from allowed addresses", function()
  t.mock("GET", "/api/customers/A4", { status = 200, json = { name = "Cy" } })
  t.post("orders", "new order", { order_id = "A4", amount = 500 })
  local res = t.post("orders", "status", { order_id = "A4", status = "Packed" }, { ip = "192.0.2.7" })
  t.eq(res.status, 403)
end)
