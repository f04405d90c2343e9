---@meta hookwork
-- Type definitions of the `hookwork` module for lua-language-server (and
-- any LSP editor using it).  Nothing here runs: the engine ships the real
-- module.  `hookwork init` writes a .luarc.json that points at this folder.

---@alias hw.FieldType
---| '"string"' | '"string?"'
---| '"number"' | '"number?"'
---| '"integer"' | '"integer?"'
---| '"boolean"' | '"boolean?"'
---| '"object"' | '"object?"'
---| '"array"' | '"array?"'
---| '"any"' | '"any?"'

---@alias hw.Method '"GET"'|'"POST"'|'"PUT"'|'"PATCH"'|'"DELETE"'|'"HEAD"'|'"OPTIONS"'

---The request that started (or resumed) a run.
---@class hw.Request
---@field method string
---@field path string
---@field headers table<string, string> header names are lower-case
---@field query table<string, string|string[]>
---@field body string the body as received (after Content-Encoding is decoded)
---@field json any the parsed JSON body, when it was JSON
---@field form table? the parsed form body, when it was a form
---@field ip string the client address (see --trust-proxy)

---One transaction, as a step sees it.
---@class hw.Tx
---@field id string
---@field cycle string
---@field data table the transaction's data (a JSON object)
---@field request hw.Request the request of the current run
---@field error {step: string, message: string}? set for an `on_error` target step
---@field log fun(msg: string) writes a line to the transaction's log and the engine log

---An outbound response.
---@class hw.Response
---@field status integer
---@field headers table<string, string> names lower-case
---@field body string
---@field json any the parsed body when it is JSON

---@class hw.HttpOptions
---@field method? hw.Method
---@field url? string absolute, or relative to the connector's base_url
---@field headers? table<string, string>
---@field query? table<string, string|number|boolean>
---@field json? any sent as application/json
---@field body? string sent as it is
---@field timeout? number seconds (also the stall limit: no byte for this long fails the call)
---@field retries? integer retries on connection errors, 429 and 5xx
---@field auth? {user: string, password: string}|{bearer: string}
---@field follow? integer redirects to follow (default 0)
---@field max_response? integer bytes (default 10 MiB)
---@field fail_on_status? boolean raise on a non-2xx status

---@alias hw.TxFn<T> fun(tx: hw.Tx): T

---@class hw.StepBase
---@field name? string unique within the cycle; default "KIND N"
---@field description? string
---@field retry? {attempts: integer, delays: number[]} try a failing step again after each delay (the last repeats)
---@field on_error? string after the last attempt, jump to this later step with tx.error set

---@class hw.Verifier
---@class hw.Step

---@class hw.WebhookOptions: hw.StepBase
---@field name string
---@field fields? table<string, hw.FieldType> Custom Fields; dotted names read nested JSON
---@field match? string|{request: string, transaction: string} the Webhook Mapping (mid-cycle webhooks)
---@field ip_filtered? boolean only the connector's allowed_ips may call
---@field methods? hw.Method[] default {"POST"}
---@field expires? number seconds a parked transaction waits
---@field verify? hw.Verifier|hw.Verifier[] signature or auth check before anything is stored
---@field dedupe? boolean|{header?: string, field?: string, key?: fun(req: hw.Request): string?, window?: number}|fun(req: hw.Request): string?
---@field cors? {origins: string[]|"*", headers?: string[], max_age?: number}
---@field early? number seconds an unmatched request is kept for a later park
---@field pick? '"most_recent"'|'"oldest"'|'"all"'|'"only"'
---@field resume_with? '"snapshot"'|'"latest"'

---@class hw.StepOptions: hw.StepBase
---@field run fun(tx: hw.Tx)

---@class hw.DecisionOptions: hw.StepBase
---@field test fun(tx: hw.Tx): any
---@field on_false? string "stop" (default) or the name of a later step

---@class hw.MapOptions: hw.StepBase
---@field fields table<string, string|fun(tx: hw.Tx): any> target = "source.path" or a function

---@class hw.RespondOptions: hw.StepBase
---@field status? integer|fun(tx: hw.Tx): integer default 200
---@field headers? table<string, string>|fun(tx: hw.Tx): table<string, string>
---@field body? table|string|fun(tx: hw.Tx): (table|string)

---@class hw.RequestOptions: hw.StepBase
---@field method? hw.Method|fun(tx: hw.Tx): hw.Method
---@field url string|fun(tx: hw.Tx): string
---@field headers? table<string, string>|fun(tx: hw.Tx): table<string, string>
---@field query? table|fun(tx: hw.Tx): table
---@field json? any|fun(tx: hw.Tx): any
---@field body? string|fun(tx: hw.Tx): string
---@field timeout? number
---@field retries? integer
---@field save_as? string where the response lands in tx.data (default: the step name)
---@field auth? table
---@field follow? integer
---@field max_response? integer
---@field fail_on_status? boolean

---@class hw.LinkOptions: hw.StepBase
---@field cycle string the target cycle
---@field hook string the target webhook step
---@field body? table|fun(tx: hw.Tx): table default: the transaction's data

---@class hw.FinishOptions: hw.StepBase
---@field state? '"completed"'|'"failed"'|'"cancelled"'

---@class hw.CycleOptions
---@field name? string default: the file name
---@field connector? string default "default"
---@field autostart? boolean default true
---@field sync_timeout? number seconds a synchronous caller waits (default 30)
---@field on_sync_timeout? '"fail"'|'"accept"' "accept": 202 with a status_url instead of 504
---@field on_failure? {cycle: string, hook: string}|{url: string}
---@field keep? {completed?: number, failed?: number, expired?: number, cancelled?: number} days
---@field description? string
---@field steps hw.Step[]

---@class hw.ConnectorOptions
---@field name string
---@field allowed_ips? string[] addresses and CIDRs, IPv4 and IPv6
---@field base_url? string for relative request URLs
---@field headers? table<string, string> sent with relative URLs and on the base_url's origin
---@field secrets? table<string, string>
---@field allow_private? boolean allow link-local and metadata addresses
---@field description? string

---@class hw.Http
local http = {}
---@param url string
---@param opts? hw.HttpOptions
---@return hw.Response
function http.get(url, opts) end
---@param url string
---@param opts? hw.HttpOptions
---@return hw.Response
function http.post(url, opts) end
---@param url string
---@param opts? hw.HttpOptions
---@return hw.Response
function http.put(url, opts) end
---@param url string
---@param opts? hw.HttpOptions
---@return hw.Response
function http.patch(url, opts) end
---@param url string
---@param opts? hw.HttpOptions
---@return hw.Response
function http.delete(url, opts) end
---@param opts hw.HttpOptions
---@return hw.Response
function http.request(opts) end

---@class hw.Json
---@field null lightuserdata JSON null
local json = {}
---@param v any
---@return string
function json.encode(v) end
---@param s string
---@return any
function json.decode(s) end
---Marks a table as a JSON array (so an empty one encodes as `[]`).
---@generic T: table
---@param t T
---@return T
function json.array(t) end

---@alias hw.Encoding '"hex"'|'"base64"'|'"base64url"'

---@class hw.Crypto
local crypto = {}
---@param algorithm '"md5"'|'"sha1"'|'"sha256"'|'"sha384"'|'"sha512"'
---@param key string
---@param message string
---@param encoding? hw.Encoding raw bytes when omitted
---@return string
function crypto.hmac(algorithm, key, message, encoding) end
---@param msg string
---@param encoding? hw.Encoding
---@return string
function crypto.sha256(msg, encoding) end
---@param msg string
---@param encoding? hw.Encoding
---@return string
function crypto.sha1(msg, encoding) end
---@param msg string
---@param encoding? hw.Encoding
---@return string
function crypto.sha512(msg, encoding) end
---@param msg string
---@param encoding? hw.Encoding
---@return string
function crypto.md5(msg, encoding) end
---Constant-time comparison.
---@param a string
---@param b string
---@return boolean
function crypto.equal(a, b) end
---@param n integer
---@param encoding? hw.Encoding
---@return string n random bytes
function crypto.random(n, encoding) end

---@class hw.Codec
local codec = {}
---@param s string
---@return string
function codec.encode(s) end
---@param s string
---@return string?
function codec.decode(s) end

---@class hw.Verify
local verify = {}
---@param o {secret: string|string[], tolerance?: number}
---@return hw.Verifier
function verify.standard_webhooks(o) end
---@param o {secret: string|string[]}
---@return hw.Verifier
function verify.github(o) end
---@param o {secret: string|string[], tolerance?: number}
---@return hw.Verifier
function verify.stripe(o) end
---@param o {secret: string|string[]}
---@return hw.Verifier
function verify.shopify(o) end
---@param o {secret: string|string[], tolerance?: number}
---@return hw.Verifier
function verify.slack(o) end
---@param o {secret: string|string[], header: string, algorithm?: '"sha1"'|'"sha256"'|'"sha512"', encoding?: hw.Encoding, prefix?: string, payload?: fun(req: hw.Request): string}
---@return hw.Verifier
function verify.hmac(o) end
---@param o {user: string, password: string|string[]}
---@return hw.Verifier
function verify.basic(o) end
---@param o {token: string|string[]}
---@return hw.Verifier
function verify.bearer(o) end
---@param o {name: string, value: string|string[]}
---@return hw.Verifier
function verify.header(o) end
---@param o {secret?: string|string[], public_key?: string|string[], algorithms?: string[], header?: string, audience?: string, issuer?: string, leeway?: number}
---@return hw.Verifier
function verify.jwt(o) end

---@class hookwork
---@field http hw.Http
---@field json hw.Json
---@field crypto hw.Crypto
---@field base64 hw.Codec
---@field base64url hw.Codec
---@field hex hw.Codec
---@field verify hw.Verify
---@field time {now: fun(): number}
local hw = {}

---@param o hw.CycleOptions
---@return table
function hw.cycle(o) end
---@param o hw.ConnectorOptions
---@return table
function hw.connector(o) end
---@param o hw.WebhookOptions
---@return hw.Step
function hw.webhook(o) end
---@param o hw.StepOptions
---@return hw.Step
function hw.step(o) end
---@param o hw.DecisionOptions
---@return hw.Step
function hw.decision(o) end
---@param o hw.MapOptions
---@return hw.Step
function hw.map(o) end
---@param o hw.RespondOptions
---@return hw.Step
function hw.respond(o) end
---@param o hw.RequestOptions
---@return hw.Step
function hw.request(o) end
---@param o hw.LinkOptions
---@return hw.Step
function hw.link(o) end
---@param o hw.FinishOptions
---@return hw.Step
function hw.finish(o) end
---The full URL of a webhook step.
---@param cycle string
---@param hook string
---@return string
function hw.url(cycle, hook) end
---Reads environment variable NAME at load time; the load fails when it is unset.
---@param name string
---@return string
function hw.secret(name) end

return hw
