-- Tests for hello.lua: run with `./hookwork test cycles`.
local t = require "hookwork.test"

t.case("hello answers with a greeting", function()
  local res = t.post("hello", "in", { name = "Ada", times = 2 })
  t.eq(res.status, 200)
  t.eq(res.json.greeting, "hello Ada! hello Ada! ")
  t.eq(t.transaction(res.json.id).state, "completed")
end)

t.case("a missing name is rejected with the field named", function()
  local res = t.post("hello", "in", { times = 1 })
  t.eq(res.status, 400)
  t.eq(res.json.error, "field 'name': missing (expected string)")
end)
