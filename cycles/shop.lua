-- The connector the example cycles share: a local stand-in for a shop API.
local hw = require "hookwork"

return hw.connector {
  name = "shop",
  allowed_ips = { "127.0.0.1", "::1" },
  base_url = "http://127.0.0.1:9000",
  headers = { ["X-Api-Key"] = os.getenv("SHOP_KEY") or "demo-key" },
}
