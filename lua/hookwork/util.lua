-- util: small pure helpers shared by the engine modules (paths into nested
-- tables, URL encoding, JSON with the engine's conventions).
local J = require "hookwork.json"
local U = {}

U.null = J.null
U.json = J

function U.split_path(name)
  local parts = {}
  for p in tostring(name):gmatch("[^%.]+") do parts[#parts + 1] = p end
  return parts
end

-- Raw reads: the engine reads tx.data outside steps (a park's match
-- value), where no metamethod of cycle code may run.
function U.get(t, path)
  if type(path) == "string" then path = U.split_path(path) end
  for i = 1, #path do
    if type(t) ~= "table" then return nil end
    t = rawget(t, path[i])
  end
  return t
end

function U.set(t, path, v)
  if type(path) == "string" then path = U.split_path(path) end
  for i = 1, #path - 1 do
    local k = path[i]
    if type(t[k]) ~= "table" then t[k] = {} end
    t = t[k]
  end
  t[path[#path]] = v
end

-- A JSON array: decoded from one or marked with json.array, or a non-empty
-- sequence.
function U.is_array(t)
  if type(t) ~= "table" then return false end
  if J.is_array(t) then return true end
  local n = #t
  if n == 0 then return next(t) == nil and false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

-- Deep copy (tables only; no metatables but the JSON array marker).
function U.copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = U.copy(x) end
  if J.is_array(v) then J.array(c) end
  return c
end

-- Merges src into dst: objects merge recursively, anything else replaces.
function U.merge(dst, src)
  for k, v in pairs(src) do
    if type(v) == "table" and type(dst[k]) == "table" and not U.is_array(v)
       and not U.is_array(dst[k]) then
      U.merge(dst[k], v)
    else
      dst[k] = U.copy(v)
    end
  end
  return dst
end

-- JSON text of v (core/json.c: exact integers, shortest round-trip
-- doubles, [] kept apart from {}, always valid UTF-8).  Raises
-- "ROOT.path: reason" for what JSON cannot hold (nan, inf, a function, a
-- table that contains itself, nesting over 200); root names v in that
-- message ("tx.data").
function U.encode(v, root) return J.encode(v, root) end

-- Value of JSON text s, or nil, message.  mode "lax" (the engine's own
-- store rows) reads bytes that are not UTF-8 as U+FFFD instead of
-- refusing them.
function U.decode(s, mode) return J.decode(s, mode) end

-- Why a header cannot be sent as given, or nil: the name must be an HTTP
-- token and the value free of CR, LF and NUL (else one header could add
-- others, or a second response).  The message names the header, never its
-- value (it may be a secret).
function U.header_problem(name, value)
  name, value = tostring(name), tostring(value)
  if not name:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
    return string.format("header name %q is not a valid HTTP header name", name)
  end
  if value:find("[\r\n%z]") then
    return string.format("header '%s' has CR, LF or NUL in its value", name)
  end
  return nil
end

-- Numbers that hold integers print without ".0" (match values, URLs).
function U.scalar_string(v)
  if math.type(v) == "float" and v == math.floor(v) and v > -2^53 and v < 2^53 then
    return string.format("%d", v)
  end
  return tostring(v)
end

function U.url_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function U.url_encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

function U.parse_query(q)
  local t = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    if k and k ~= "" then t[U.url_decode(k)] = U.url_decode(v) end
  end
  return t
end

function U.encode_query(q)
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do out[#out + 1] = U.url_encode(k) .. "=" .. U.url_encode(U.scalar_string(x)) end
    else
      out[#out + 1] = U.url_encode(k) .. "=" .. U.url_encode(U.scalar_string(v))
    end
  end
  return table.concat(out, "&")
end

-- Edit distance between two short strings (option and type names).
local function distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur[0] = i
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

-- " (did you mean 'x'?)" for the candidate closest to word (a set or a
-- list of names), or "" when none is close: a typo, a plural, a prefix.
function U.did_you_mean(word, candidates)
  word = tostring(word):lower()
  local best, bestd
  local names = {}
  for k, v in pairs(candidates) do names[#names + 1] = type(k) == "string" and k or v end
  table.sort(names)
  for _, name in ipairs(names) do
    local d = distance(word, name:lower())
    local lname, common = name:lower(), 0
    while common < #word and word:byte(common + 1) == lname:byte(common + 1) do common = common + 1 end
    -- a shared stem counts as close: retry/retries, header/headers
    if (common >= 4 and common >= 0.6 * math.min(#word, #lname))
       or (common >= 3 and common == #word) then d = math.min(d, 1) end
    if not bestd or d < bestd then best, bestd = name, d end
  end
  if best and bestd <= math.max(1, math.min(3, #word // 3)) then
    return string.format(" (did you mean '%s'?)", best)
  end
  return ""
end

return U
