/* Unit tests for reader_pg.c's placeholder translation (`?`, `?N` ->
 * `$N`); no server needed.  Queries on a real
 * PostgreSQL are covered by the e2e suite (HOOKWORK_TEST_STORE=postgres). */
#include "reader_pg.h"
#include "unit.h"

#include <errno.h>

static char out[512];
static int np;

static const char *tr(const char *sql) {
  np = -1;
  if (hw_reader_pg_translate(sql, out, sizeof out, &np) != 0)
    return "(error)";
  return out;
}

TEST(numbered) {
  ASSERT_STREQ(tr("SELECT id FROM tx WHERE cycle = ?1 AND state = ?2 LIMIT ?3"),
               "SELECT id FROM tx WHERE cycle = $1 AND state = $2 LIMIT $3");
  ASSERT_EQ(np, 3);
  ASSERT_STREQ(tr("SELECT ?2, ?1, ?2"), "SELECT $2, $1, $2");
  ASSERT_EQ(np, 2);
  ASSERT_STREQ(tr("SELECT 1"), "SELECT 1");
  ASSERT_EQ(np, 0);
}

TEST(bare_as_sqlite) {
  /* a bare ? takes the number after the highest so far */
  ASSERT_STREQ(tr("VALUES(?,?,?)"), "VALUES($1,$2,$3)");
  ASSERT_EQ(np, 3);
  ASSERT_STREQ(tr("SELECT ?5, ?"), "SELECT $5, $6");
  ASSERT_EQ(np, 6);
  ASSERT_STREQ(tr("SELECT $2, ?"), "SELECT $2, $3");
}

TEST(literals_untouched) {
  ASSERT_STREQ(tr("SELECT '?1', 'it''s ?', \"a?b\", ?1"),
               "SELECT '?1', 'it''s ?', \"a?b\", $1");
  ASSERT_EQ(np, 1);
  ASSERT_STREQ(tr("SELECT E'\\' ?', ?"), "SELECT E'\\' ?', $1");
  ASSERT_STREQ(tr("SELECT $$ ? $$, $t$ '?' $t$, ?"),
               "SELECT $$ ? $$, $t$ '?' $t$, $1");
  ASSERT_STREQ(tr("SELECT 1 -- what ?\n, ?"), "SELECT 1 -- what ?\n, $1");
  ASSERT_STREQ(tr("SELECT /* ? */ ?"), "SELECT /* ? */ $1");
  ASSERT_STREQ(tr("SELECT x::text, '{\"a\":1}'::json ->> 'a'"),
               "SELECT x::text, '{\"a\":1}'::json ->> 'a'");
  /* an unterminated literal is copied as is (the server names the error) */
  ASSERT_STREQ(tr("SELECT 'abc ?"), "SELECT 'abc ?");
}

TEST(bad_numbers) {
  ASSERT_EQ(hw_reader_pg_translate("SELECT ?0", out, sizeof out, &np), -EINVAL);
  ASSERT_EQ(hw_reader_pg_translate("SELECT ?1000", out, sizeof out, &np),
            -EINVAL);
  ASSERT_EQ(hw_reader_pg_translate("SELECT ?99999999999999999999", out,
                                   sizeof out, &np),
            -EINVAL);
  ASSERT_EQ(hw_reader_pg_translate("SELECT ?1, ?2", out, 8, &np), -ENOSPC);
}

RUN_TESTS("reader_pg", T(numbered), T(bare_as_sqlite), T(literals_untouched),
          T(bad_numbers))
