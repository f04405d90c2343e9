-- wrk script for the door bench: POST of the body in WRK_BODY_FILE with an
-- optional header WRK_HEADER ("Name: value"), one RESULT line.
wrk.method = "POST"
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.body = f:read("a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local h = os.getenv("WRK_HEADER")
if h and h ~= "" then
  local k, v = h:match("^([^:]+):%s*(.*)$")
  wrk.headers[k] = v
end

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_done.lua")
