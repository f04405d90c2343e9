-- verify: the webhook's `verify` schemes (hw.verify.*) and hw.secret.
-- A scheme is built once per load (its options checked here, its secrets
-- decoded by core/verify.c then) and checks a request before anything is
-- stored, over the exact raw bytes received (before any Content-Encoding
-- is decoded).  The checks are core/verify.c's, shared with the C accept
-- path: every comparison of secret material is constant-time, failures
-- name the reason, never a secret or the expected value.
local door = require "hookwork.door"
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
  if #out > 16 then fail(string.format("hw.verify.%s: '%s' takes at most 16 entries", scheme, key)) end
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

local function new(kind, scheme, fields)
  fields.kind, fields.scheme = kind, scheme
  SCHEMES[fields] = true
  return setmetatable(fields, SCHEME)
end

function V.is_scheme(v) return SCHEMES[v] == true end

-- The check itself is door.c's (core/verify.c): one implementation for the
-- Lua door and the C accept path.  Its load errors (a secret that does not
-- decode, a PEM key that does not fit) fail the load here.
local function compiled(name, spec)
  local c, err = door.scheme(name, spec)
  if not c then fail(err) end
  return c
end

local function scheme(kind, name, headers, spec, extra)
  local fields = extra or {}
  fields.headers, fields.c = headers, compiled(name, spec)
  return new(kind, name, fields)
end

-- ---------------------------------------------------------------- schemes

local S = {}

-- Standard Webhooks / Svix: HMAC-SHA256 of "id.timestamp.body" with the
-- base64 key after "whsec_"; signatures "v1,BASE64" space-separated.
function S.standard_webhooks(o)
  check_opts("standard_webhooks", o, { secret = true, tolerance = true })
  return scheme("signature", "standard_webhooks",
    { "webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-timestamp", "svix-signature" },
    { secrets = secrets("standard_webhooks", "secret", o.secret), tolerance = tolerance("standard_webhooks", o) })
end

function S.github(o)
  check_opts("github", o, { secret = true })
  return scheme("signature", "github", { "x-hub-signature-256", "x-hub-signature" },
                { secrets = secrets("github", "secret", o.secret) })
end

-- Stripe: "t=TS,v1=HEX[,v1=HEX...]" over "TS.body", the whole secret
-- (whsec_ included) as the key.
function S.stripe(o)
  check_opts("stripe", o, { secret = true, tolerance = true })
  return scheme("signature", "stripe", { "stripe-signature" },
                { secrets = secrets("stripe", "secret", o.secret), tolerance = tolerance("stripe", o) })
end

function S.shopify(o)
  check_opts("shopify", o, { secret = true })
  return scheme("signature", "shopify", { "x-shopify-hmac-sha256" },
                { secrets = secrets("shopify", "secret", o.secret) })
end

-- Slack: "v0=HEX" of "v0:TS:body", TS in X-Slack-Request-Timestamp.
function S.slack(o)
  check_opts("slack", o, { secret = true, tolerance = true })
  return scheme("signature", "slack", { "x-slack-signature" },
                { secrets = secrets("slack", "secret", o.secret), tolerance = tolerance("slack", o) })
end

local ALGS = { sha1 = true, sha256 = true, sha512 = true }

-- Any HMAC in a header: PREFIX .. hex or base64 of HMAC(payload).  With a
-- payload function (cycle code) the header is checked first (door.c, over
-- an empty body: any failure but a mismatch is the header's), then the
-- MAC over what the function returned.
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
  local payload = o.payload
  local s = scheme("signature", "hmac", { o.header:lower() },
                   { secrets = keys, header = o.header, algorithm = alg, encoding = enc, prefix = prefix })
  if payload then
    local c = s.c
    rawset(s, "payload", true)
    rawset(s, "check", function(req, now)
      local ok, code, msg = door.check_one(c, req.headers, "", now)
      if not ok and code ~= "mismatch" then return ok, code, msg end
      -- cycle code: a step's scope (budget, memory), its error a string
      local okp, m = require("hookwork.core").protect(payload, req)
      if not okp then error(m, 0) end -- V.check names it (and logs m)
      if type(m) ~= "string" then return false, "malformed", "payload function did not return a string" end
      return door.check_one(c, req.headers, m, now)
    end)
  end
  return s
end

function S.basic(o)
  check_opts("basic", o, { user = true, password = true })
  if type(o.user) ~= "string" or o.user == "" then fail("hw.verify.basic: 'user' must be a non-empty string") end
  return scheme("auth", "basic", { "authorization" },
                { user = o.user, secrets = secrets("basic", "password", o.password) },
                { challenge = 'Basic realm="hookwork"' })
end

function S.bearer(o)
  check_opts("bearer", o, { token = true })
  return scheme("auth", "bearer", { "authorization" }, { secrets = secrets("bearer", "token", o.token) },
                { challenge = "Bearer" })
end

function S.header(o)
  check_opts("header", o, { name = true, value = true })
  if type(o.name) ~= "string" or o.name == "" then fail("hw.verify.header: 'name' must name a header") end
  return scheme("auth", "header", { o.name:lower() },
                { header = o.name, secrets = secrets("header", "value", o.value) })
end

local JWT_ALGS = { HS256 = true, HS384 = true, HS512 = true, RS256 = true, ES256 = true }

-- JWT (JWS compact): the header's alg must be one of `algorithms`; HS*
-- with `secret`, RS256/ES256 with `public_key` (PEM); exp and nbf are
-- checked (with `leeway` seconds), and aud/iss when configured.
function S.jwt(o)
  check_opts("jwt", o, { secret = true, public_key = true, algorithms = true,
                         header = true, audience = true, issuer = true, leeway = true })
  local algs = o.algorithms or { "HS256" }
  if type(algs) == "string" then algs = { algs } end
  if type(algs) ~= "table" or #algs == 0 then fail("hw.verify.jwt: 'algorithms' must be a list such as {\"HS256\"}") end
  local need_secret, need_key = false, false
  for _, a in ipairs(algs) do
    if not JWT_ALGS[a] then
      fail("hw.verify.jwt: unknown algorithm '" .. tostring(a) .. "' (HS256, HS384, HS512, RS256, ES256)")
    end
    if a:sub(1, 2) == "HS" then need_secret = true else need_key = true end
  end
  local keys = secrets("jwt", "secret", o.secret, not need_secret)
  local pems = secrets("jwt", "public_key", o.public_key, not need_key)
  if need_secret and not keys then fail("hw.verify.jwt: HS algorithms need 'secret'") end
  if o.audience ~= nil and type(o.audience) ~= "string" then fail("hw.verify.jwt: 'audience' must be a string") end
  if o.issuer ~= nil and type(o.issuer) ~= "string" then fail("hw.verify.jwt: 'issuer' must be a string") end
  local leeway = o.leeway or 0
  if type(leeway) ~= "number" or leeway < 0 then fail("hw.verify.jwt: 'leeway' must be a number of seconds") end
  local shown = o.header or "Authorization"
  if type(shown) ~= "string" or shown == "" then fail("hw.verify.jwt: 'header' must name a header") end
  return scheme("auth", "jwt", { shown:lower() },
                { secrets = keys, pems = pems, algorithms = algs, header = shown, audience = o.audience,
                  issuer = o.issuer, leeway = leeway },
                { challenge = shown:lower() == "authorization" and "Bearer" or nil })
end

V.schemes = S

-- Compiles a webhook's `verify` option: a scheme or a list of schemes
-- (any one passing is enough: a sender moving from one scheme to another
-- is served by both).  Returns a new list; its `c` is the C list the
-- accept path checks with (absent when a scheme needs Lua: an hmac
-- payload function).
function V.compile(v)
  if v == nil then return nil end
  if type(v) == "function" then
    fail("hw.webhook: 'verify' must be a scheme: call it, as in hw.verify.github { secret = ... }")
  end
  local list = V.is_scheme(v) and { v } or v
  if type(list) ~= "table" or #list == 0 then
    fail("hw.webhook: 'verify' must be a hw.verify scheme or a list of them")
  end
  local out, cs, pure = {}, {}, true
  for i, s in ipairs(list) do
    if not V.is_scheme(s) then
      fail(string.format("hw.webhook: verify entry %d is not a hw.verify scheme", i))
    end
    out[i], cs[i] = s, s.c
    if s.check then pure = false end
  end
  if pure then out.c = door.list(cs) end
  return out
end

-- Checks a request against the schemes: nil when one passes, or
-- "signature: REASON" / "auth: REASON" (the first scheme's), the metric
-- reason, the WWW-Authenticate challenge, and for the log only the error
-- of a failed payload function.
function V.check(list, req, now)
  if list.c then return door.check(list.c, req.headers, req.body, now) end
  local first
  for _, s in ipairs(list) do
    local ok, good, code, msg
    if s.check then ok, good, code, msg = pcall(s.check, req, now)
    else ok, good, code, msg = true, door.check_one(s.c, req.headers, req.body, now) end
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
