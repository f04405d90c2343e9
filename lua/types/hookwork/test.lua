---@meta hookwork.test
-- Type definitions of `hookwork.test`, the API of *_test.lua files, for
-- lua-language-server.  Nothing here runs.

---@class hwtest.Answer
---@field status integer
---@field headers table<string, string> names lower-case
---@field body string
---@field json any the parsed body when it is JSON

---@class hwtest.PostOptions
---@field ip? string the client address (default 127.0.0.1)
---@field method? string default "POST"
---@field headers? table<string, string>
---@field query? string the raw query string
---@field content_type? string sent as Content-Type (default application/json)
---@field body? string a raw body, sent as it is (instead of the JSON of `body`)
---@field wait? boolean false: return at acknowledgement, not when the run ends

---@class hwtest.MockResponse
---@field status? integer default 200
---@field headers? table<string, string>
---@field json? any
---@field body? string
---@field error? string a network error instead of an answer

---@class hwtest.Recorded
---@field method string
---@field url string
---@field path string
---@field query table<string, string|string[]> decoded
---@field headers table<string, string>
---@field body string?
---@field json any

---@class hookwork.test
local t = {}

---Declares a test case; each gets a fresh store and fresh mocks.
---@param name string
---@param fn fun()
function t.case(name, fn) end

---Sends a request to a webhook in-process; returns when its run ended or parked.
---@param cycle string
---@param hook string
---@param body? table|string
---@param opts? hwtest.PostOptions
---@return hwtest.Answer
function t.post(cycle, hook, body, opts) end

---Answers outbound calls to METHOD URL (a path, a path with a query in any
---order, or a full URL). A list of responses is answered in turn, the last
---repeating; a function gets the recorded request.
---@param method string
---@param url string
---@param response hwtest.MockResponse|hwtest.MockResponse[]|fun(req: hwtest.Recorded): hwtest.MockResponse
function t.mock(method, url, response) end

---The outbound requests made so far that match.
---@param method? string
---@param url? string
---@return hwtest.Recorded[]
function t.requests(method, url) end

---A transaction as the admin API shows it.
---@param id string|integer
---@return table?
function t.transaction(id) end

---Moves the engine's clock forward (expiry, retry delays, early buffers).
---@param seconds number
function t.advance(seconds) end

---Sets a connector's allowed IPs as `PUT /api/connectors/NAME` would.
---@param name string
---@param o {allowed_ips: string[]}
function t.connector(name, o) end

---Starts a stopped cycle.
---@param cycle string
function t.start(cycle) end

---Stops a cycle: its webhooks answer 503.
---@param cycle string
function t.stop(cycle) end

---Retries a failed transaction (as POST /api/transactions/ID/retry).
---@param id string|integer
---@param from? string
function t.retry(id, from) end

---Cancels a waiting or running transaction.
---@param id string|integer
function t.cancel(id) end

---@param got any
---@param want any
---@param msg? string
function t.eq(got, want, msg) end

---@param v any
---@param msg? string
---@return any
function t.ok(v, msg) end

---Expects fn to raise; returns the error.
---@param fn fun()
---@param pattern? string
---@return any
function t.fails(fn, pattern) end

return t
