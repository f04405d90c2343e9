-- jsonlib: the JSON functions cycle code gets from `require "cjson"`, kept
-- for files written against lua-cjson: encode and null as hookwork.json's,
-- decode raising on bad input as lua-cjson's did.  hw.json is the
-- documented interface.
local J = require "hookwork.json"

local function decode(s)
  local v, err = J.decode(s)
  if v == nil then error(err, 2) end
  return v
end

return { encode = J.encode, decode = decode, null = J.null, array = J.array }
