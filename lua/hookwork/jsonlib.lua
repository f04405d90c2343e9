-- jsonlib: the JSON functions cycle code may use (require "cjson" in a
-- cycle file gets this read-only view, not the engine's module table).
local cjson = require "cjson"
return { encode = cjson.encode, decode = cjson.decode, null = cjson.null }
