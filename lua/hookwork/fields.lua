-- fields: the webhook step's Custom Fields.  Compiles a `fields` spec once
-- per load, reads a request body (JSON object or form-encoded), and
-- validates and copies the declared fields into the transaction's data.
local U = require "hookwork.util"
local F = {}

local TYPES = { string = true, number = true, integer = true, boolean = true,
                object = true, array = true, any = true }

-- Returns a sorted list of {name, path, type, optional}, or nil, message.
function F.compile(fields)
  if fields == nil then return nil end
  if type(fields) ~= "table" then return nil, "fields must be a table" end
  local list = {}
  for name, spec in pairs(fields) do
    if type(name) ~= "string" or name == "" then
      return nil, "fields: names must be non-empty strings"
    end
    if type(spec) ~= "string" then
      return nil, string.format("field '%s': type must be a string", name)
    end
    local t, opt = spec:match("^(%a+)(%??)$")
    if not t or not TYPES[t] then
      return nil, string.format("field '%s': unknown type '%s'%s; the types are string, number, "
        .. "integer, boolean, object, array and any (a trailing ? makes a field optional)",
        name, spec, U.did_you_mean(spec:gsub("%?$", ""), TYPES))
    end
    list[#list + 1] = { name = name, path = U.split_path(name), type = t,
                        optional = opt == "?" }
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

local function json_type_ok(t, v)
  local lt = type(v)
  if t == "any" then return true end
  if t == "string" then return lt == "string" end
  if t == "number" then return lt == "number" end
  -- an integral float (1.0, 1e3) counts; inf and nan never do
  if t == "integer" then return lt == "number" and math.tointeger(v) ~= nil end
  if t == "boolean" then return lt == "boolean" end
  if t == "array" then return lt == "table" and U.is_array(v) end
  if t == "object" then return lt == "table" and not U.is_array(v) end
  return false
end

-- Form values are strings: convert when they parse as the declared type.
local function from_form(t, v)
  if t == "string" or t == "any" then return v end
  if t == "number" then return tonumber(v) end
  if t == "integer" then
    local n = math.tointeger(tonumber(v))
    if n and v:match("^%s*[-+]?%d+%s*$") then return n end
    return nil
  end
  if t == "boolean" then
    if v == "true" then return true elseif v == "false" then return false end
  end
  return nil
end

-- Reads the body: returns obj, is_form or nil, message.
function F.parse_body(req)
  local body = req.body or ""
  local ct = (req.headers["content-type"] or ""):lower()
  if ct:find("application/x-www-form-urlencoded", 1, true) then
    -- `curl -d '{...}'` labels JSON as a form: a body that is a JSON
    -- object is read as JSON whatever the label says.
    local v = body:match("^%s*{") and U.decode(body)
    if type(v) == "table" then return v, false end
    return U.parse_query(body), true
  end
  if body:match("^%s*$") then return {}, false end
  local looks_json = ct:find("json", 1, true) or body:match("^%s*[%[{]")
  if not looks_json then
    return nil, "unsupported body: send a JSON object or form-encoded data"
  end
  local v, err = U.decode(body)
  if v == nil then
    return nil, "malformed JSON body: " .. tostring(err)
  end
  if type(v) ~= "table" or U.is_array(v) then
    return nil, "malformed JSON body: expected a JSON object"
  end
  return v, false
end

-- Validates obj against the compiled spec and returns the data to merge
-- into tx.data, or nil and "field 'x': ...".
function F.extract(spec, obj, is_form)
  local data = {}
  if spec == nil then
    for k, v in pairs(obj) do
      if v ~= U.null then data[k] = v end
    end
    return data
  end
  for _, f in ipairs(spec) do
    local v = U.get(obj, f.path)
    if v == nil or v == U.null then
      if not f.optional then
        return nil, string.format("field '%s': missing (expected %s)", f.name, f.type)
      end
    else
      if is_form and type(v) == "string" then
        local c = from_form(f.type, v)
        if c == nil then
          return nil, string.format("field '%s': expected %s", f.name, f.type)
        end
        v = c
      elseif not json_type_ok(f.type, v) then
        return nil, string.format("field '%s': expected %s", f.name, f.type)
      elseif f.type == "integer" then
        v = math.tointeger(v)
      end
      U.set(data, f.path, v)
    end
  end
  return data
end

return F
