-- luacheck configuration for cycle files and their tests (`make test` runs
-- `luacheck cycles`).  Cycle files run in hookwork's sandbox: Lua 5.4's
-- base library, coroutine, string, table, math, utf8 and a cut-down os; no
-- io, package, debug, dofile, loadfile or collectgarbage.
stds.hookwork = {
  read_globals = {
    "assert", "error", "ipairs", "next", "pairs", "pcall", "xpcall", "select",
    "tonumber", "tostring", "type", "rawequal", "rawget", "rawlen", "rawset",
    "setmetatable", "getmetatable", "require", "load", "print", "_VERSION",
    "coroutine", "string", "table", "math", "utf8",
    os = { fields = { "time", "clock", "date", "getenv", "difftime" } },
  },
  globals = { "_G" },
}
std = "hookwork"
max_line_length = 120
files["**/*_test.lua"] = { max_line_length = 140 }
