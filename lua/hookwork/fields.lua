-- fields: the webhook step's Custom Fields.  Compiles a `fields` spec once
-- per load, reads a request body (JSON of any type, forms with nested and
-- repeated keys, multipart with files, anything else raw), and validates
-- and copies the declared fields into the transaction's data.
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

-- Marks t as a JSON array (so an empty one stays []).
local function mark_array(t) return U.json.array(t) end

-- Form keys: "a[b][c]" and "a.b.c" both name a nested field; "a[]"
-- appends to a list.  Returns the path, or { key } when it is not one.
-- Walks by position (a long key costs linear time) and stops at
-- MAX_FORM_DEPTH levels: nil, message.
local MAX_FORM_DEPTH = 32

local function form_path(k)
  local open = k:find("[", 1, true)
  local head = open and k:sub(1, open - 1) or k
  if head == "" then return { k } end
  local path = U.split_path(head)
  if #path == 0 then return { k } end
  local pos = open
  while pos and pos <= #k do
    if #path > MAX_FORM_DEPTH then break end
    if k:byte(pos) ~= 91 then return { k } end -- "["
    local close = k:find("]", pos + 1, true)
    if not close then return { k } end
    path[#path + 1] = k:sub(pos + 1, close - 1)
    pos = close + 1
  end
  if #path > MAX_FORM_DEPTH then
    return nil, string.format("form field '%s': nested deeper than %d levels",
                              #k > 40 and k:sub(1, 40) .. "..." or k, MAX_FORM_DEPTH)
  end
  return path
end

-- A form builder: repeated keys become lists, nested keys objects.
-- leaf(v) tells values (strings, file parts) from nested objects.
local function form_builder()
  local root, lists, leaves = {}, {}, {}
  local b = { root = root }
  function b.put(key, v)
    if type(v) == "table" then leaves[v] = true end
    local path, perr = form_path(key)
    if not path then return perr end
    local t = root
    for i = 1, #path - 1 do
      local p = path[i]
      local nx = t[p]
      if p == "" then -- "a[][b]": a new object at the end of the list
        if not lists[t] then return string.format("form field '%s': mixes a list and fields", key) end
        nx = {}
        t[#t + 1] = nx
      elseif nx == nil then
        nx = {}
        t[p] = nx
        if path[i + 1] == "" then lists[nx] = true end
      elseif type(nx) ~= "table" or leaves[nx] or (lists[nx] and path[i + 1] ~= "") then
        return string.format("form field '%s': mixes a value and nested fields", key)
      end
      t = nx
    end
    local last = path[#path]
    if last == "" then
      if not lists[t] then return string.format("form field '%s': mixes a list and fields", key) end
      t[#t + 1] = v
      return nil
    end
    local cur = t[last]
    if cur == nil then
      t[last] = v
    elseif type(cur) == "string" or leaves[cur] then
      local l = { cur, v }
      lists[l] = true
      t[last] = l
    elseif lists[cur] then
      cur[#cur + 1] = v
    else
      return string.format("form field '%s': mixes a value and nested fields", key)
    end
    return nil
  end
  function b.finish()
    for l in pairs(lists) do mark_array(l) end
    return root
  end
  return b
end

-- application/x-www-form-urlencoded: returns the object or nil, message.
function F.parse_form(body)
  local b = form_builder()
  for pair in body:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k and k ~= "" then
      local err = b.put(U.url_decode(k), U.url_decode(v))
      if err then return nil, err end
    end
  end
  return b.finish()
end

local function base64(s)
  local ok, crypto = pcall(require, "hookwork.crypto")
  if ok then return crypto.b64_encode(s) end
  return require("hookwork.base64")(s)
end

local function param(h, name)
  return h:match("[;%s]" .. name .. '="([^"]*)"') or h:match("[;%s]" .. name .. "=([^;%s]+)")
end

-- multipart/form-data: text parts are form values, file parts
-- {filename, content_type, size, base64}.  Returns the object or nil,
-- message.
function F.parse_multipart(body, ctype)
  local boundary = param(ctype, "boundary")
  if not boundary or boundary == "" then
    return nil, "malformed multipart body: no boundary in Content-Type"
  end
  local delim = "--" .. boundary
  local s, e = body:find(delim, 1, true)
  if not s or (s > 1 and body:sub(s - 2, s - 1) ~= "\r\n") then
    return nil, "malformed multipart body: boundary not found"
  end
  local b, pos = form_builder(), e + 1
  while true do
    if body:sub(pos, pos + 1) == "--" then break end
    local eol = body:find("\r\n", pos, true)
    if not eol then return nil, "malformed multipart body: truncated" end
    local hstart = eol + 2
    local hend
    if body:sub(hstart, hstart + 1) == "\r\n" then hend = hstart - 2
    else hend = body:find("\r\n\r\n", hstart, true) end
    if not hend then return nil, "malformed multipart body: part headers not ended" end
    local head = body:sub(hstart, hend + 1)
    local cstart = hend + 4
    local nxt = body:find("\r\n" .. delim, cstart, true)
    if not nxt then return nil, "malformed multipart body: missing closing boundary" end
    local content = body:sub(cstart, nxt - 1)
    pos = nxt + 2 + #delim
    local h = {}
    for line in head:gmatch("(.-)\r\n") do
      local k, v = line:match("^([^:]+):%s*(.-)%s*$")
      if k then h[k:lower()] = v end
    end
    local cd = " " .. (h["content-disposition"] or "")
    local name, filename = param(cd, "name"), param(cd, "filename")
    if name and name ~= "" then
      local v = content
      if filename then
        v = { filename = filename, content_type = h["content-type"] or "application/octet-stream",
              size = #content, base64 = base64(content) }
      end
      local err = b.put(name, v)
      if err then return nil, err end
    end
  end
  return b.finish()
end

-- The media type of a request, lower-case, without parameters, and the
-- whole Content-Type header.
function F.media_type(headers)
  local ct = headers["content-type"] or ""
  return (ct:match("^%s*([^;%s]+)") or ""):lower(), ct
end

local function json_type(mt)
  return mt == "application/json" or mt == "text/json" or mt:match("^application/.+%+json$") ~= nil
end

-- Reads the (decoded) body: returns value, is_form, kind, where kind is
-- "json" (value: any JSON value), "form" or "multipart" (an object),
-- "empty" ({}) or "raw" ({}: XML, text, binary; kept in tx.request.body
-- only); or nil, message for a 400.
function F.parse_body(req)
  local body = req.body or ""
  local mt, ct = F.media_type(req.headers)
  if mt == "application/x-www-form-urlencoded" then
    -- `curl -d '{...}'` labels JSON as a form: a body that is a JSON
    -- object is read as JSON whatever the label says.
    local v = body:match("^%s*{") and U.decode(body)
    if type(v) == "table" then return v, false, "json" end
    local obj, err = F.parse_form(body)
    if not obj then return nil, err end
    return obj, true, "form"
  end
  if mt == "multipart/form-data" then
    local obj, err = F.parse_multipart(body, ct)
    if not obj then return nil, err end
    return obj, true, "multipart"
  end
  if body:match("^%s*$") then return {}, false, "empty" end
  if body:sub(1, 3) == "\239\187\191" then body = body:sub(4) end -- UTF-8 BOM
  -- unlabelled or text/plain bodies that look like JSON are read as JSON
  -- (curl's and many senders' defaults); anything else is kept raw
  local sniff = (mt == "" or mt == "text/plain") and body:match("^%s*[%[{]")
  if not json_type(mt) and not sniff then return {}, false, "raw" end
  local v, err = U.decode(body)
  if v == nil then
    if sniff and not json_type(mt) then return {}, false, "raw" end
    return nil, "malformed JSON body: " .. tostring(err)
  end
  return v, false, "json"
end

-- The data a request adds to tx.data: returns data, or nil, message,
-- status (400 or 415).
function F.to_data(spec, v, is_form, kind, mt)
  if kind == "raw" then
    if spec then return nil, "unsupported content type " .. (mt ~= "" and mt or "(none)"), 415 end
    return {}
  end
  if kind == "json" and (type(v) ~= "table" or U.is_array(v)) then
    if spec then return nil, "expected a JSON object", 400 end
    if v == U.null then return {} end
    return { body = v }
  end
  local data, err = F.extract(spec, v, is_form)
  if not data then return nil, err, 400 end
  return data
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
