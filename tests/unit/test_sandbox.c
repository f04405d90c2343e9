/* Unit tests for the sandbox's C side: the allocator's accounts, the step
 * scope of core.protect (budget and kill flag cleared when it returns),
 * work charged by the pattern matcher, coroutine ownership and __gc.
 * Each test opens the engine's real Lua state (lua/ of the repository)
 * without a store or a loop. */
#include "unit.h"

#include <lauxlib.h>

#include "lua_api.h"
#include "scheduler.h"

static hw_engine_t eng;

static lua_State *open_engine(long budget) {
  memset(&eng, 0, sizeof eng);
  eng.cfg.lua_dir = "lua";
  eng.cfg.cycles_dir = ".";
  eng.cfg.mode = HW_MODE_CHECK;
  eng.cfg.step_budget = budget;
  if (hw_lua_open(&eng) != 0)
    return NULL;
  return eng.L;
}

/* Runs code in the engine's state (main context, as a loader would) with
 * `core` and `sb` (core.sandbox()) as globals; 1 when it ran without error. */
static int run(const char *code) {
  lua_State *L = eng.L;
  int ok;
  (void) luaL_dostring(L, "core = require 'hookwork.core'; sb = core.sandbox()");
  ok = luaL_dostring(L, code) == LUA_OK;
  if (!ok)
    fprintf(stderr, "  %s\n", lua_tostring(L, -1));
  lua_settop(L, 0);
  return ok;
}

TEST(protect_clears_the_kill_flag_when_it_returns) {
  ASSERT_TRUE(open_engine(1000000) != NULL);
  ASSERT_TRUE(run(
      "local ok, err = core.protect(function() while true do end end)\n"
      "assert(not ok and err:find('step stopped: it ran past its budget', 1, true), err)\n"
      "-- the code after the step is not stopped\n"
      "local n = 0 for i = 1, 200000 do n = n + 1 end\n"
      "assert(n == 200000)"));
  ASSERT_EQ(eng.main_budget.killed, 0);
  ASSERT_EQ(eng.main_budget.depth, 0);
  hw_lua_close(&eng);
}

TEST(pcall_loops_cannot_swallow_the_stop) {
  ASSERT_TRUE(open_engine(1000000) != NULL);
  ASSERT_TRUE(run(
      "local pcall = sb.pcall\n"
      "local ok, err = core.protect(function()\n"
      "  while true do pcall(function() while true do end end) end\n"
      "end)\n"
      "assert(not ok and err:find('step stopped', 1, true), err)"));
  hw_lua_close(&eng);
}

TEST(error_objects_become_strings_under_the_budget) {
  ASSERT_TRUE(open_engine(1000000) != NULL);
  ASSERT_TRUE(run(
      "local bad = setmetatable({}, { __tostring = function() error({}) end })\n"
      "local ok, err = core.protect(function() error(bad) end)\n"
      "assert(not ok and err == '(error object is not a string)', err)\n"
      "local loop = setmetatable({}, { __tostring = function() while true do end end })\n"
      "ok, err = core.protect(function() error(loop) end)\n"
      "assert(not ok and err:find('step stopped', 1, true), err)\n"
      "ok, err = core.protect(function() error({ message = 'named' }) end)\n"
      "assert(err == 'named', err)\n"
      "ok, err = core.protect(function(a, b) return a + b, 'x' end, 2, 3)\n"
      "assert(ok == true and err == 5)"));
  ASSERT_EQ(eng.main_budget.killed, 0);
  hw_lua_close(&eng);
}

TEST(pattern_matching_is_charged) {
  ASSERT_TRUE(open_engine(2000000) != NULL);
  ASSERT_TRUE(run(
      "local ok, err = core.protect(function()\n"
      "  return string.find(('a'):rep(3000), '.-.-.-.-b')\n"
      "end)\n"
      "assert(not ok and err:find('budget of 2000000', 1, true), err)\n"
      "ok, err = core.protect(function() return ('abc'):rep(10):gsub('b', 'x') end)\n"
      "assert(ok and err == ('axc'):rep(10), err)"));
  hw_lua_close(&eng);
}

TEST(accounts_follow_their_blocks) {
  lua_State *L = open_engine(1000000);
  hw_memacct_t *a = hw_mem_acct_new(&eng);
  size_t before;
  ASSERT_TRUE(L != NULL && a != NULL);
  lua_gc(L, LUA_GCCOLLECT);
  before = eng.mem.total;
  eng.mem.acct = a;
  memset(lua_newuserdatauv(L, 1 << 20, 0), 'x', 1 << 20);
  eng.mem.acct = NULL;
  ASSERT_TRUE(hw_mem_acct_bytes(a) >= (1u << 20));
  ASSERT_TRUE(eng.mem.total + 65536 >= before + (1u << 20)); /* (a GC step may shrink tables) */
  lua_pop(L, 1); /* garbage now */
  lua_gc(L, LUA_GCCOLLECT); /* freed while no account is current */
  ASSERT_TRUE(hw_mem_acct_bytes(a) < 4096);
  ASSERT_TRUE(eng.mem.total < before + 4096);
  hw_mem_acct_release(&eng, a); /* kept now or with its last block (ASan checks) */
  hw_lua_close(&eng);
}

/* Starting a run allocates no account once the engine has run a while: an
 * account no block points to any more is kept and handed out again, and
 * one that still has blocks is never handed out before its last block is
 * freed (a block's header names its account). */
#define HW_TEST_SPARES 2048
TEST(accounts_are_reused_only_when_empty) {
  lua_State *L = open_engine(1000000);
  hw_memacct_t *a, *b, *c;
  ASSERT_TRUE(L != NULL);
  a = hw_mem_acct_new(&eng);
  ASSERT_TRUE(a != NULL);
  hw_mem_acct_release(&eng, a); /* empty: kept at once */
  b = hw_mem_acct_new(&eng);
  ASSERT_TRUE(b == a);
  ASSERT_TRUE(hw_mem_acct_bytes(b) == 0);
  eng.mem.acct = b;
  lua_newuserdatauv(L, 4096, 0); /* a block charged to b, still alive */
  eng.mem.acct = NULL;
  hw_mem_acct_release(&eng, b);
  c = hw_mem_acct_new(&eng);
  ASSERT_TRUE(c != NULL && c != b); /* b still has a block */
  ASSERT_TRUE(hw_mem_acct_bytes(c) == 0);
  lua_pop(L, 1);
  lua_gc(L, LUA_GCCOLLECT); /* b's last block goes: b is kept now */
  hw_mem_acct_release(&eng, c);
  ASSERT_TRUE(hw_mem_acct_new(&eng) == c); /* the last kept first */
  {
    hw_memacct_t *got[HW_TEST_SPARES];
    int n = 0, found = 0, i;
    while (eng.mem.nspare > 0 && n < HW_TEST_SPARES) { /* b, among any others kept */
      got[n] = hw_mem_acct_new(&eng);
      ASSERT_TRUE(hw_mem_acct_bytes(got[n]) == 0);
      found |= got[n] == b;
      n++;
    }
    ASSERT_TRUE(found);
    for (i = 0; i < n; i++)
      hw_mem_acct_release(&eng, got[i]);
  }
  hw_mem_acct_release(&eng, c);
  hw_lua_close(&eng); /* frees the kept ones (ASan checks) */
  ASSERT_TRUE(eng.mem.spare == NULL && eng.mem.nspare == 0);
}

/* Starting a run in steady state allocates nothing: the coroutine comes
 * from the pool of finished runs and the memory account from the spare
 * list; the Lua heap sees no allocation either.  A run whose thread cycle
 * code has seen is not pooled (checked by its exposed flag). */
TEST(a_pooled_run_start_allocates_nothing) {
  uv_loop_t loop;
  lua_State *L = open_engine(1000000);
  uint64_t allocs;
  int npool, nspare, i;
  hw_run_t *r;
  ASSERT_TRUE(L != NULL);
  ASSERT_TRUE(uv_loop_init(&loop) == 0);
  ASSERT_TRUE(uv_idle_init(&loop, &eng.idle) == 0);
  for (i = 0; i < 3; i++) { /* warm: a run ends, its thread and account are kept */
    ASSERT_TRUE(luaL_loadstring(L, "local x = {} return") == LUA_OK);
    ASSERT_TRUE(hw_sched_spawn(&eng, L, 0) != NULL);
    hw_sched_drain(&eng);
  }
  /* an account comes back once no block is charged to it: after the
   * collection that frees the runs' garbage */
  lua_gc(L, LUA_GCCOLLECT);
  ASSERT_TRUE(eng.npool >= 1 && eng.mem.nspare >= 1);
  ASSERT_TRUE(luaL_loadstring(L, "local x = {} return") == LUA_OK); /* the function to run */
  allocs = eng.mem.allocs;
  npool = eng.npool;
  nspare = eng.mem.nspare;
  r = hw_sched_spawn(&eng, L, 0);
  ASSERT_TRUE(r != NULL);
  ASSERT_TRUE(eng.mem.allocs == allocs); /* no Lua allocation */
  ASSERT_TRUE(eng.npool == npool - 1);   /* a pooled thread, not lua_newthread */
  ASSERT_TRUE(eng.mem.nspare == nspare - 1); /* a kept account, not calloc */
  hw_sched_drain(&eng);
  lua_gc(L, LUA_GCCOLLECT);
  ASSERT_TRUE(eng.npool == npool && eng.mem.nspare == nspare); /* both back */
  /* a thread cycle code saw is never reused: it is not pooled */
  ASSERT_TRUE(luaL_loadstring(L, "return") == LUA_OK);
  r = hw_sched_spawn(&eng, L, 0);
  ASSERT_TRUE(r != NULL);
  r->exposed = 1;
  hw_sched_drain(&eng);
  ASSERT_TRUE(eng.npool == npool - 1); /* the exposed one was freed, not kept */
  hw_lua_close(&eng);
  uv_close((uv_handle_t *) &eng.idle, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_TRUE(uv_loop_close(&loop) == 0);
}

TEST(a_file_load_is_limited_like_a_run) {
  lua_State *L;
  setenv("HOOKWORK_RUN_MEMORY", "3000000", 1);
  L = open_engine(50000000);
  unsetenv("HOOKWORK_RUN_MEMORY");
  ASSERT_TRUE(L != NULL);
  ASSERT_EQ(eng.mem.run_limit, 3000000);
  ASSERT_TRUE(run(
      "local ok, err = core.protect(function() return #string.rep('x', 4000000) end)\n"
      "assert(not ok and err == 'step stopped: memory limit of 3000000 bytes', err)\n"
      "ok, err = core.protect(function()\n"
      "  local okr = pcall(string.rep, 'x', 4000000)\n"
      "  return okr, #string.rep('y', 1000)\n"
      "end)\n"
      "assert(ok and err == false, 'a caught failure is the step\\'s business')\n"
      "-- a refusal the collection made room for is no failure\n"
      "ok, err = core.protect(function()\n"
      "  local s = string.rep('a', 1000000) s = nil\n"
      "  local t = string.rep('b', 1000000)\n"
      "  error('plain', 0)\n"
      "end)\n"
      "assert(err == 'plain', err)\n"
      "-- outside a step the engine is not limited per run\n"
      "assert(#string.rep('x', 4000000) == 4000000)"));
  ASSERT_TRUE(eng.mem.acct == NULL);
  hw_lua_close(&eng);
}

TEST(the_heap_limit_holds) {
  lua_State *L;
  setenv("HOOKWORK_LUA_MEMORY", "20000000", 1);
  L = open_engine(50000000);
  unsetenv("HOOKWORK_LUA_MEMORY");
  ASSERT_TRUE(L != NULL);
  ASSERT_TRUE(run(
      "local ok, err = core.protect(function()\n"
      "  local keep = {} for i = 1, 100 do keep[i] = string.rep(tostring(i), 1000000) end\n"
      "end)\n"
      "assert(not ok and err == 'step stopped: memory limit of 20000000 bytes', err)"));
  ASSERT_TRUE(eng.mem.total < 20000000);
  hw_lua_close(&eng);
}

TEST(coroutines_belong_to_their_owner) {
  ASSERT_TRUE(open_engine(1000000) != NULL);
  ASSERT_TRUE(run(
      "co = sb.coroutine.create(function(a) local b = sb.coroutine.yield(a + 1) return b end)\n"
      "local ok, v = sb.coroutine.resume(co, 1)\n"
      "assert(ok and v == 2)\n"
      "assert(sb.coroutine.status(co) == 'suspended')"));
  eng.main_serial = ++eng.serial; /* the next main-context call */
  ASSERT_TRUE(run(
      "local ok, err = pcall(sb.coroutine.resume, co, 5)\n"
      "assert(not ok and err:find('not a coroutine created in this run', 1, true), err)\n"
      "ok, err = pcall(sb.coroutine.close, co)\n"
      "assert(not ok)\n"
      "ok, err = pcall(sb.coroutine.resume, coroutine.create(function() end))\n"
      "assert(not ok, 'a coroutine the sandbox did not make is nobody\\'s')"));
  hw_lua_close(&eng);
}

TEST(gc_and_environment) {
  ASSERT_TRUE(open_engine(1000000) != NULL);
  setenv("HOOKWORK_ADMIN_TOKEN", "secret", 1);
  setenv("UNIT_PROBE", "seen", 1);
  ASSERT_TRUE(run(
      "local ok, err = pcall(sb.setmetatable, {}, { __gc = function() end })\n"
      "assert(not ok and err:find('__gc is not allowed in cycles', 1, true), err)\n"
      "assert(pcall(sb.setmetatable, {}, { __close = function() end, __mode = 'k' }))\n"
      "local locked = sb.setmetatable({}, { __metatable = 'no' })\n"
      "assert(sb.getmetatable(locked) == 'no')\n"
      "assert(not pcall(sb.setmetatable, locked, {}))\n"
      "assert(sb.getmetatable('') == nil)\n"
      "assert(sb.getenv('HOOKWORK_ADMIN_TOKEN') == nil)\n"
      "assert(sb.getenv('UNIT_PROBE') == 'seen')"));
  unsetenv("HOOKWORK_ADMIN_TOKEN");
  hw_lua_close(&eng);
}

RUN_TESTS("sandbox",
  T(protect_clears_the_kill_flag_when_it_returns),
  T(pcall_loops_cannot_swallow_the_stop),
  T(error_objects_become_strings_under_the_budget),
  T(pattern_matching_is_charged),
  T(accounts_follow_their_blocks),
  T(accounts_are_reused_only_when_empty),
  T(a_pooled_run_start_allocates_nothing),
  T(a_file_load_is_limited_like_a_run),
  T(the_heap_limit_holds),
  T(coroutines_belong_to_their_owner),
  T(gc_and_environment))
