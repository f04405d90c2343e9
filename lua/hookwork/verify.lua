-- verify: the webhook's `verify` schemes (hw.verify.*) and hw.secret.
-- A scheme is built once per load (its secrets checked and decoded then)
-- and checks a request before anything is stored, over the exact raw
-- bytes received (before any Content-Encoding is decoded).  Every
-- comparison of secret material is constant-time (crypto.equal).
-- Failures name the reason, never a secret or the expected value.
local crypto = require "hookwork.crypto"
local U = require "hookwork.util"
local V = {}

-- Scheme objects carry a protected metatable (cycle code cannot reach or
-- change it); the engine knows its own schemes by this weak set.
local SCHEME = { __metatable = "hookwork verify scheme" }
local SCHEMES = setmetatable({}, { __mode = "k" })

local function fail(msg) error(msg, 0) end

-- Secrets: a non-empty string or a non-empty list of them (rotation: any
-- one matching passes).  Errors name the option, never its value.
local function secrets(scheme, key, v, optional)
  if v == nil and optional then return nil end
  local list = type(v) == "table" and v or { v }
  if type(v) ~= "string" and type(v) ~= "table" then list = {} end
  local out = {}
  for i, s in ipairs(list) do
    if type(s) ~= "string" or s == "" then
      fail(string.format("hw.verify.%s: '%s' entry %d must be a non-empty string", scheme, key, i))
    end
    out[#out + 1] = s
  end
  if #out == 0 then
    fail(string.format("hw.verify.%s: '%s' must be a non-empty string or a list of them", scheme, key))
  end
  return out
end

local function check_opts(scheme, o, allowed)
  if type(o) ~= "table" then fail("hw.verify." .. scheme .. " expects a table of options") end
  for k in pairs(o) do
    if not allowed[k] then
      fail(string.format("hw.verify.%s: unknown option '%s'%s", scheme, tostring(k), U.did_you_mean(k, allowed)))
    end
  end
end

local function tolerance(scheme, o)
  local t = o.tolerance
  if t == nil then return 300 end
  if type(t) ~= "number" or t <= 0 then
    fail(string.format("hw.verify.%s: 'tolerance' must be a positive number of seconds", scheme))
  end
  return t
end

-- Result of a check: true, or false, reason code, message.
local function no(code, msg) return false, code, msg end

local function timestamp_ok(ts, tol, now)
  local n = ts and ts:match("^%d+$") and tonumber(ts)
  if not n then return no("malformed", "timestamp is not a number of seconds") end
  if math.abs(now - n) > tol then
    return no("timestamp", "timestamp outside the tolerance of " .. U.scalar_string(tol) .. " seconds")
  end
  return true
end

-- Any of the expected MACs (one per secret) equals any of the given ones.
local function any_equal(expected, given)
  local hit = false
  for _, e in ipairs(expected) do
    for _, g in ipairs(given) do
      -- no early exit: the time does not tell which secret matched
      if crypto.equal(e, g) then hit = true end
    end
  end
  return hit
end

-- The scheme check's last act: the HMAC of msg under each key against the
-- signatures given (a string or a list); any pair equal passes.
local function signed_by(alg, keys, msg, given)
  local expected = {}
  for _, k in ipairs(keys) do expected[#expected + 1] = crypto.hmac(alg, k, msg) end
  if type(given) == "string" then given = { given } end
  if not any_equal(expected, given) then return no("mismatch", "no matching signature") end
  return true
end

local function new(kind, scheme, fields)
  fields.kind, fields.scheme = kind, scheme
  SCHEMES[fields] = true
  return setmetatable(fields, SCHEME)
end

function V.is_scheme(v) return SCHEMES[v] == true end

-- ---------------------------------------------------------------- schemes

local S = {}

-- Standard Webhooks / Svix: HMAC-SHA256 of "id.timestamp.body" with the
-- base64 key after "whsec_"; signatures "v1,BASE64" space-separated.
function S.standard_webhooks(o)
  check_opts("standard_webhooks", o, { secret = true, tolerance = true })
  local keys = {}
  for i, s in ipairs(secrets("standard_webhooks", "secret", o.secret)) do
    local k = crypto.b64_decode((s:gsub("^whsec_", "")))
    if not k or k == "" then
      fail(string.format("hw.verify.standard_webhooks: secret %d is not whsec_ followed by base64", i))
    end
    keys[#keys + 1] = k
  end
  local tol = tolerance("standard_webhooks", o)
  return new("signature", "standard_webhooks", {
    headers = { "webhook-id", "webhook-timestamp", "webhook-signature",
                "svix-id", "svix-timestamp", "svix-signature" },
    delivery = function(req) return req.headers["webhook-id"] or req.headers["svix-id"] end,
    check = function(req, now)
      local h = req.headers
      local id = h["webhook-id"] or h["svix-id"]
      local ts = h["webhook-timestamp"] or h["svix-timestamp"]
      local sig = h["webhook-signature"] or h["svix-signature"]
      if not id then return no("missing", "missing webhook-id header") end
      if not ts then return no("missing", "missing webhook-timestamp header") end
      if not sig then return no("missing", "missing webhook-signature header") end
      local ok, code, msg = timestamp_ok(ts, tol, now)
      if not ok then return ok, code, msg end
      local given = {}
      for entry in sig:gmatch("%S+") do
        local v, b = entry:match("^(v%d+[a-z]*),(.+)$")
        if v == "v1" then given[#given + 1] = crypto.b64_decode(b) or "" end
      end
      if #given == 0 then return no("malformed", "no v1 signature in webhook-signature") end
      local msgs = id .. "." .. ts .. "." .. req.body
      return signed_by("sha256", keys, msgs, given)
    end,
  })
end

-- A hex MAC from a header "PREFIX=HEX" (GitHub, Slack): raw bytes, or nil.
local function hex_after(v, prefix)
  if not v or v:sub(1, #prefix) ~= prefix then return nil end
  return crypto.hex_decode(v:sub(#prefix + 1))
end

function S.github(o)
  check_opts("github", o, { secret = true })
  local keys = secrets("github", "secret", o.secret)
  return new("signature", "github", {
    headers = { "x-hub-signature-256", "x-hub-signature" },
    delivery = function(req) return req.headers["x-github-delivery"] end,
    check = function(req)
      local v = req.headers["x-hub-signature-256"]
      if not v then return no("missing", "missing X-Hub-Signature-256 header") end
      local given = hex_after(v, "sha256=")
      if not given then return no("malformed", "X-Hub-Signature-256 is not sha256=HEX") end
      return signed_by("sha256", keys, req.body, given)
    end,
  })
end

-- Stripe: "t=TS,v1=HEX[,v1=HEX...]" over "TS.body", the whole secret
-- (whsec_ included) as the key.
function S.stripe(o)
  check_opts("stripe", o, { secret = true, tolerance = true })
  local keys = secrets("stripe", "secret", o.secret)
  local tol = tolerance("stripe", o)
  return new("signature", "stripe", {
    headers = { "stripe-signature" },
    delivery = function(_, obj) return type(obj) == "table" and obj.id or nil end,
    check = function(req, now)
      local v = req.headers["stripe-signature"]
      if not v then return no("missing", "missing Stripe-Signature header") end
      local ts, given = nil, {}
      for item in v:gmatch("[^,]+") do
        local k, x = item:match("^%s*([%w_]+)=(.-)%s*$")
        if k == "t" then ts = x
        elseif k == "v1" then given[#given + 1] = crypto.hex_decode(x) or "" end
      end
      if not ts then return no("malformed", "Stripe-Signature has no t=") end
      if #given == 0 then return no("malformed", "Stripe-Signature has no v1=") end
      local ok, code, msg = timestamp_ok(ts, tol, now)
      if not ok then return ok, code, msg end
      return signed_by("sha256", keys, ts .. "." .. req.body, given)
    end,
  })
end

function S.shopify(o)
  check_opts("shopify", o, { secret = true })
  local keys = secrets("shopify", "secret", o.secret)
  return new("signature", "shopify", {
    headers = { "x-shopify-hmac-sha256" },
    delivery = function(req) return req.headers["x-shopify-webhook-id"] end,
    check = function(req)
      local v = req.headers["x-shopify-hmac-sha256"]
      if not v then return no("missing", "missing X-Shopify-Hmac-Sha256 header") end
      local given = crypto.b64_decode(v)
      if not given then return no("malformed", "X-Shopify-Hmac-Sha256 is not base64") end
      return signed_by("sha256", keys, req.body, given)
    end,
  })
end

-- Slack: "v0=HEX" of "v0:TS:body", TS in X-Slack-Request-Timestamp.
function S.slack(o)
  check_opts("slack", o, { secret = true, tolerance = true })
  local keys = secrets("slack", "secret", o.secret)
  local tol = tolerance("slack", o)
  return new("signature", "slack", {
    headers = { "x-slack-signature" },
    check = function(req, now)
      local v = req.headers["x-slack-signature"]
      local ts = req.headers["x-slack-request-timestamp"]
      if not v then return no("missing", "missing X-Slack-Signature header") end
      if not ts then return no("missing", "missing X-Slack-Request-Timestamp header") end
      local ok, code, msg = timestamp_ok(ts, tol, now)
      if not ok then return ok, code, msg end
      local given = hex_after(v, "v0=")
      if not given then return no("malformed", "X-Slack-Signature is not v0=HEX") end
      return signed_by("sha256", keys, "v0:" .. ts .. ":" .. req.body, given)
    end,
  })
end

local ALGS = { sha1 = true, sha256 = true, sha512 = true }

-- Any HMAC in a header: PREFIX .. hex or base64 of HMAC(payload).
function S.hmac(o)
  check_opts("hmac", o, { secret = true, header = true, algorithm = true,
                          encoding = true, prefix = true, payload = true })
  local keys = secrets("hmac", "secret", o.secret)
  if type(o.header) ~= "string" or o.header == "" then
    fail("hw.verify.hmac: 'header' must name the signature header")
  end
  local alg = o.algorithm or "sha256"
  if not ALGS[alg] then fail("hw.verify.hmac: 'algorithm' must be sha1, sha256 or sha512") end
  local enc = o.encoding or "hex"
  if enc ~= "hex" and enc ~= "base64" then fail("hw.verify.hmac: 'encoding' must be hex or base64") end
  local prefix = o.prefix or ""
  if type(prefix) ~= "string" then fail("hw.verify.hmac: 'prefix' must be a string") end
  if o.payload ~= nil and type(o.payload) ~= "function" then
    fail("hw.verify.hmac: 'payload' must be a function(req) returning the signed string")
  end
  local header, payload = o.header:lower(), o.payload
  return new("signature", "hmac", {
    headers = { header },
    check = function(req)
      local v = req.headers[header]
      if not v then return no("missing", "missing " .. o.header .. " header") end
      if v:sub(1, #prefix) ~= prefix then
        return no("malformed", o.header .. " does not start with '" .. prefix .. "'")
      end
      local given
      if enc == "hex" then given = crypto.hex_decode(v:sub(#prefix + 1))
      else given = crypto.b64_decode(v:sub(#prefix + 1)) end
      if not given then return no("malformed", o.header .. " is not " .. enc) end
      local msg = req.body
      if payload then
        -- cycle code: a step's scope (budget, memory), its error a string
        local okp, m = require("hookwork.core").protect(payload, req)
        if not okp then error(m, 0) end -- V.check names it (and logs m)
        msg = m
        if type(msg) ~= "string" then return no("malformed", "payload function did not return a string") end
      end
      return signed_by(alg, keys, msg, given)
    end,
  })
end

function S.basic(o)
  check_opts("basic", o, { user = true, password = true })
  if type(o.user) ~= "string" or o.user == "" then fail("hw.verify.basic: 'user' must be a non-empty string") end
  local creds = {}
  for _, p in ipairs(secrets("basic", "password", o.password)) do
    creds[#creds + 1] = o.user .. ":" .. p
  end
  return new("auth", "basic", {
    headers = { "authorization" },
    challenge = 'Basic realm="hookwork"',
    check = function(req)
      local v = req.headers["authorization"]
      if not v then return no("missing", "missing Authorization header") end
      local b = v:match("^[Bb][Aa][Ss][Ii][Cc]%s+(%S+)%s*$")
      local given = b and crypto.b64_decode(b)
      if not given then return no("malformed", "Authorization is not Basic credentials") end
      if not any_equal(creds, { given }) then return no("mismatch", "wrong user or password") end
      return true
    end,
  })
end

local function bearer_of(v)
  return v and v:match("^[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
end

function S.bearer(o)
  check_opts("bearer", o, { token = true })
  local tokens = secrets("bearer", "token", o.token)
  return new("auth", "bearer", {
    headers = { "authorization" },
    challenge = "Bearer",
    check = function(req)
      local v = req.headers["authorization"]
      if not v then return no("missing", "missing Authorization header") end
      local t = bearer_of(v)
      if not t then return no("malformed", "Authorization is not a Bearer token") end
      if not any_equal(tokens, { t }) then return no("mismatch", "wrong token") end
      return true
    end,
  })
end

function S.header(o)
  check_opts("header", o, { name = true, value = true })
  if type(o.name) ~= "string" or o.name == "" then fail("hw.verify.header: 'name' must name a header") end
  local values = secrets("header", "value", o.value)
  local name = o.name:lower()
  return new("auth", "header", {
    headers = { name },
    check = function(req)
      local v = req.headers[name]
      if not v then return no("missing", "missing " .. o.name .. " header") end
      if not any_equal(values, { v }) then return no("mismatch", "wrong " .. o.name .. " value") end
      return true
    end,
  })
end

local JWT_ALGS = { HS256 = "sha256", HS384 = "sha384", HS512 = "sha512", RS256 = true, ES256 = true }

-- JWT (JWS compact): the header's alg must be one of `algorithms`; HS*
-- with `secret`, RS256/ES256 with `public_key` (PEM); exp and nbf are
-- checked (with `leeway` seconds), and aud/iss when configured.
function S.jwt(o)
  check_opts("jwt", o, { secret = true, public_key = true, algorithms = true,
                         header = true, audience = true, issuer = true, leeway = true })
  local algs = o.algorithms or { "HS256" }
  if type(algs) == "string" then algs = { algs } end
  if type(algs) ~= "table" or #algs == 0 then fail("hw.verify.jwt: 'algorithms' must be a list such as {\"HS256\"}") end
  local allowed, need_secret, need_key = {}, false, false
  for _, a in ipairs(algs) do
    if not JWT_ALGS[a] then
      fail("hw.verify.jwt: unknown algorithm '" .. tostring(a) .. "' (HS256, HS384, HS512, RS256, ES256)")
    end
    allowed[a] = true
    if a:sub(1, 2) == "HS" then need_secret = true else need_key = true end
  end
  local keys = secrets("jwt", "secret", o.secret, not need_secret)
  local pems = secrets("jwt", "public_key", o.public_key, not need_key)
  if need_secret and not keys then fail("hw.verify.jwt: HS algorithms need 'secret'") end
  for i, pem in ipairs(pems or {}) do
    local fits
    for a in pairs(allowed) do
      if a:sub(1, 2) ~= "HS" and crypto.pk_check(a, pem) then fits = true end
    end
    if not fits then
      fail(string.format("hw.verify.jwt: public_key %d is not a PEM public key for %s", i,
                         table.concat(algs, "/")))
    end
  end
  if o.audience ~= nil and type(o.audience) ~= "string" then fail("hw.verify.jwt: 'audience' must be a string") end
  if o.issuer ~= nil and type(o.issuer) ~= "string" then fail("hw.verify.jwt: 'issuer' must be a string") end
  local leeway = o.leeway or 0
  if type(leeway) ~= "number" or leeway < 0 then fail("hw.verify.jwt: 'leeway' must be a number of seconds") end
  local shown = o.header or "Authorization"
  if type(shown) ~= "string" or shown == "" then fail("hw.verify.jwt: 'header' must name a header") end
  local header = shown:lower()
  return new("auth", "jwt", {
    headers = { header },
    challenge = header == "authorization" and "Bearer" or nil,
    check = function(req, now)
      local v = req.headers[header]
      if not v then return no("missing", "missing " .. shown .. " header") end
      local tok = bearer_of(v) or (header ~= "authorization" and v) or nil
      if not tok then return no("malformed", "Authorization is not a Bearer token") end
      local h64, p64, s64 = tok:match("^([%w_%-]+)%.([%w_%-]+)%.([%w_%-]*)$")
      if not h64 then return no("malformed", "token is not a JWT") end
      local hj, pj, sig = crypto.b64url_decode(h64), crypto.b64url_decode(p64), crypto.b64url_decode(s64)
      local hd, claims = hj and U.decode(hj), pj and U.decode(pj)
      if type(hd) ~= "table" or type(claims) ~= "table" or not sig then
        return no("malformed", "token is not a JWT")
      end
      local alg = hd.alg
      if type(alg) ~= "string" or not allowed[alg] then
        return no("algorithm", "token algorithm " .. tostring(alg) .. " is not allowed")
      end
      local signed, good = h64 .. "." .. p64, false
      if alg:sub(1, 2) == "HS" then
        local expected = {}
        for _, k in ipairs(keys) do expected[#expected + 1] = crypto.hmac(JWT_ALGS[alg], k, signed) end
        good = any_equal(expected, { sig })
      else
        for _, pem in ipairs(pems or {}) do
          if crypto.pk_verify(alg, pem, signed, sig) then good = true end
        end
      end
      if not good then return no("mismatch", "bad token signature") end
      if claims.exp ~= nil and (type(claims.exp) ~= "number" or now >= claims.exp + leeway) then
        return no("expired", "token expired")
      end
      if claims.nbf ~= nil and (type(claims.nbf) ~= "number" or now < claims.nbf - leeway) then
        return no("claims", "token not valid yet")
      end
      if o.issuer and claims.iss ~= o.issuer then return no("claims", "token issuer does not match") end
      if o.audience then
        local aud, hit = claims.aud, false
        if type(aud) == "string" then hit = aud == o.audience
        elseif type(aud) == "table" then
          for _, a in ipairs(aud) do if a == o.audience then hit = true end end
        end
        if not hit then return no("claims", "token audience does not match") end
      end
      return true
    end,
  })
end

V.schemes = S

-- Compiles a webhook's `verify` option: a scheme or a list of schemes
-- (any one passing is enough: a sender moving from one scheme to another
-- is served by both).  Returns the list, or nil.
function V.compile(v)
  if v == nil then return nil end
  if type(v) == "function" then
    fail("hw.webhook: 'verify' must be a scheme: call it, as in hw.verify.github { secret = ... }")
  end
  local list = V.is_scheme(v) and { v } or v
  if type(list) ~= "table" or #list == 0 then
    fail("hw.webhook: 'verify' must be a hw.verify scheme or a list of them")
  end
  for i, s in ipairs(list) do
    if not V.is_scheme(s) then
      fail(string.format("hw.webhook: verify entry %d is not a hw.verify scheme", i))
    end
  end
  return list
end

-- Checks a request against the schemes: nil when one passes, or
-- "signature: REASON" / "auth: REASON" (the first scheme's), the metric
-- reason, the WWW-Authenticate challenge, and for the log only the error
-- of a failed payload function.
function V.check(list, req, now)
  local first
  for _, s in ipairs(list) do
    local ok, good, code, msg = pcall(s.check, req, now)
    if ok and good then return nil end
    if not first then
      if not ok then
        -- a payload function (hmac) failed: the request cannot be verified
        first = { "signature: payload function failed", s.kind .. "_error", s.challenge, tostring(good) }
      else
        first = { s.kind .. ": " .. msg, s.kind .. "_" .. code, s.challenge }
      end
    end
  end
  return first[1], first[2], first[3], first[4]
end

-- hw.secret("NAME"): the environment variable, read at load time; an
-- unset or empty variable fails the load (naming the variable only).
function V.secret(getenv)
  return function(name)
    if type(name) ~= "string" or name == "" then error("hw.secret: expects an environment variable name", 2) end
    if name:match("^HOOKWORK_") then error("hw.secret: HOOKWORK_* variables belong to the engine", 2) end
    local v = getenv(name)
    if v == nil or v == "" then
      error(string.format("hw.secret: environment variable %s is not set", name), 2)
    end
    return v
  end
end

return V
