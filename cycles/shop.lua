-- cycles/shop.lua
local hw = require "hookwork"

return hw.connector {
  name = "shop",
  allowed_ips = { "127.0.0.1", "10.1.0.0/16", "::1" },  -- for ip_filtered webhooks
  base_url = "http://127.0.0.1:9000/api",              -- for relative request URLs
  headers = { ["X-Api-Key"] = os.getenv("SHOP_KEY") or "dev-key" },
}
