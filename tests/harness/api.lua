-- Harness fixture: a connector with an allowed-IP list and a base URL.
local hw = require "hookwork"

return hw.connector {
  name = "api",
  allowed_ips = { "127.0.0.1" },
  base_url = "http://127.0.0.1:9/v1",
}
