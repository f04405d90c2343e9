-- wrk script for the hookwork bench: a fixed request (POST of a small JSON
-- body by default; WRK_METHOD=GET for /healthz), one machine-readable line.
wrk.method = os.getenv("WRK_METHOD") or "POST"
if wrk.method ~= "GET" then
  wrk.body = os.getenv("WRK_BODY") or '{"order_id":"A1","amount":12.5}'
  wrk.headers["Content-Type"] = "application/json"
end

-- the RESULT line, shared by every bench script
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_done.lua")
