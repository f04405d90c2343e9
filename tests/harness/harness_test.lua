-- The harness features of issue 17: hw.url routed in-process, decoded
-- query matching in any order, t.connector, t.start/t.stop, t.post options.
local t = require "hookwork.test"

t.case("hw.url gives a full URL that routes in-process", function()
  t.mock("GET", "/v1/customers?active=yes&email=ada@example.com", { json = { name = "Ada" } })
  local res = t.post("front", "in", { email = "ada@example.com" })
  t.eq(res.status, 200)
  t.eq(res.json.forwarded, 202)
  t.ok(res.json.url:match("^http://[^/]+/hooks/[%w_%-]+$"), "full URL: " .. res.json.url)
  t.eq(res.json.customer.name, "Ada")
end)

t.case("mocks match decoded queries whatever the order", function()
  t.mock("GET", "/v1/customers?email=ada%40example.com&active=yes", { json = { name = "Ada" } })
  t.eq(t.post("front", "in", { email = "ada@example.com" }).json.customer.name, "Ada")
  t.eq(#t.requests("GET", "/v1/customers?active=yes&email=ada@example.com"), 1)
  t.eq(#t.requests("GET", "/v1/customers?active=no&email=ada@example.com"), 0)
end)

t.case("t.connector changes the allowed IPs", function()
  t.eq(t.post("back", "in", {}, { ip = "10.0.0.7" }).status, 403)
  t.connector("api", { allowed_ips = { "10.0.0.0/8" } })
  t.eq(t.post("back", "in", {}, { ip = "10.0.0.7" }).status, 202)
  t.eq(t.post("back", "in", {}).status, 403)
  t.fails(function() t.connector("api", { allowed_ips = { "10.0.0.300" } }) end, "allowed_ips")
  t.fails(function() t.connector("nope", { allowed_ips = {} }) end, "no connector 'nope'")
end)

t.case("t.stop and t.start", function()
  t.stop("raw")
  local res = t.post("raw", "in", {})
  t.eq(res.status, 503)
  t.eq(res.json.error, "cycle 'raw' is stopped")
  t.start("raw")
  t.eq(t.post("raw", "in", {}).status, 200)
  t.fails(function() t.stop("nope") end, "no cycle 'nope'")
end)

t.case("t.post sends headers, raw bodies and content types", function()
  local res = t.post("raw", "in", nil, { body = "name=Ada", content_type = "application/x-www-form-urlencoded",
                                         headers = { ["X-Sig"] = "abc" }, method = "PUT" })
  t.eq(res.status, 200)
  t.eq(res.json.body, "name=Ada")
  t.eq(res.json.ctype, "application/x-www-form-urlencoded")
  t.eq(res.json.sig, "abc")
  t.eq(res.json.method, "PUT")
  t.eq(res.json.name, "Ada")
end)
