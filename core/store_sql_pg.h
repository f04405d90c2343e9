/* store_sql_pg: the PostgreSQL schema and the PostgreSQL dialect of every
 * statement of store_sql.h, by the same name, in the same order, binding the
 * same values in the same order ($1..$n).  Included only by store_pg.c,
 * which checks at open that names, order and value counts match
 * store_sql.h's (a mismatch refuses to open).
 *
 * Types: ids and counters BIGINT, times DOUBLE PRECISION (unix seconds, as
 * on SQLite, so the Lua side reads the same numbers), TEXT, BYTEA for the
 * columns SQLite keeps as BLOB (answer bodies).  The admin JSON statements
 * build their text by hand (to_json of each value) so the output is
 * byte-identical to SQLite's json_object: PostgreSQL's own json_build_object
 * puts spaces around the colons.
 *
 * Several nodes: tx and jobs carry `owner`, the node that wrote the row (the
 * connection's `hookwork.node` setting, which every connection sets), and
 * `nodes` holds each node's lease.  Ids come from one sequence per kind,
 * handed out in blocks of HW_PG_ID_BLOCK (see store_pg.c), so ids are unique
 * across nodes.  schema_version holds HW_PG_SCHEMA_VERSION: see
 * hw_pg_migrations for how an older database is brought up to date. */
#ifndef HW_STORE_SQL_PG_H
#define HW_STORE_SQL_PG_H

#define HW_PG_SCHEMA_VERSION 1
#define HW_PG_ID_BLOCK 100
#define HW_PG_STR_(x) #x
#define HW_PG_STR(x) HW_PG_STR_(x)

/* Version 1: the whole schema.  Each later version appends one entry to
 * hw_pg_migrations (the SQL that takes version N-1 to N); a new database
 * runs them all in order, in one transaction. */
static const char hw_pg_schema_v1[] =
  "CREATE TABLE IF NOT EXISTS hooks(cycle TEXT NOT NULL, step TEXT NOT NULL,"
  " token TEXT NOT NULL UNIQUE, PRIMARY KEY(cycle, step));"
  "CREATE TABLE IF NOT EXISTS cycles(name TEXT PRIMARY KEY,"
  " state TEXT NOT NULL);"
  "CREATE TABLE IF NOT EXISTS connectors(name TEXT PRIMARY KEY,"
  " allowed_ips TEXT NOT NULL, file_sig TEXT);"
  "CREATE TABLE IF NOT EXISTS tx(id BIGINT PRIMARY KEY, cycle TEXT NOT NULL,"
  " state TEXT NOT NULL, step TEXT, data TEXT, created DOUBLE PRECISION,"
  " updated DOUBLE PRECISION, runs BIGINT NOT NULL DEFAULT 1,"
  " linked_cycle TEXT, linked_id BIGINT, wait_step TEXT, match_value TEXT,"
  " parked_at DOUBLE PRECISION, expires_at DOUBLE PRECISION, snapshot TEXT,"
  " error TEXT, request TEXT, ckpt_step TEXT, ckpt_data TEXT,"
  " replay_of BIGINT, retry_at DOUBLE PRECISION, attempt BIGINT,"
  " owner TEXT DEFAULT current_setting('hookwork.node', true));"
  "CREATE INDEX IF NOT EXISTS tx_wait ON tx(cycle, wait_step, match_value,"
  " parked_at) WHERE state = 'waiting';"
  "CREATE INDEX IF NOT EXISTS tx_exp ON tx(expires_at)"
  " WHERE state = 'waiting' AND expires_at IS NOT NULL;"
  "CREATE INDEX IF NOT EXISTS tx_cycle ON tx(cycle, state);"
  "CREATE INDEX IF NOT EXISTS tx_match ON tx(match_value)"
  " WHERE match_value IS NOT NULL;"
  /* recovery and takeover look for running rows */
  "CREATE INDEX IF NOT EXISTS tx_running ON tx(id) WHERE state = 'running';"
  "CREATE TABLE IF NOT EXISTS hist(tx BIGINT NOT NULL, seq BIGINT NOT NULL,"
  " run BIGINT, entries TEXT NOT NULL, PRIMARY KEY(tx, seq));"
  "CREATE TABLE IF NOT EXISTS jobs(id BIGINT PRIMARY KEY, tx BIGINT NOT NULL,"
  " run BIGINT, entry TEXT, data TEXT, request TEXT, ckpt_step TEXT,"
  " ckpt_data TEXT, base TEXT, retry_at DOUBLE PRECISION, attempt BIGINT,"
  " owner TEXT DEFAULT current_setting('hookwork.node', true));"
  "CREATE TABLE IF NOT EXISTS early(id BIGINT PRIMARY KEY,"
  " cycle TEXT NOT NULL, step TEXT NOT NULL, match_value TEXT NOT NULL,"
  " received DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL,"
  " data TEXT, request TEXT);"
  "CREATE INDEX IF NOT EXISTS early_key ON early(cycle, step, match_value,"
  " id);"
  "CREATE INDEX IF NOT EXISTS early_exp ON early(expires_at);"
  "CREATE TABLE IF NOT EXISTS sync_answers(tx BIGINT NOT NULL,"
  " run BIGINT NOT NULL, secret TEXT NOT NULL, hook TEXT NOT NULL,"
  " state TEXT NOT NULL, status BIGINT, headers TEXT, body BYTEA,"
  " created DOUBLE PRECISION NOT NULL, PRIMARY KEY(tx, run));"
  "CREATE INDEX IF NOT EXISTS sync_answers_created ON sync_answers(created);"
  "CREATE TABLE IF NOT EXISTS store_meta(k TEXT PRIMARY KEY, v TEXT);"
  "CREATE TABLE IF NOT EXISTS dedupe(cycle TEXT NOT NULL, step TEXT NOT NULL,"
  " key TEXT NOT NULL, tx BIGINT NOT NULL,"
  " expires_at DOUBLE PRECISION NOT NULL, status BIGINT, ctype TEXT,"
  " headers TEXT, body BYTEA, PRIMARY KEY(cycle, step, key));"
  "CREATE INDEX IF NOT EXISTS dedupe_exp ON dedupe(expires_at);"
  "CREATE INDEX IF NOT EXISTS dedupe_tx ON dedupe(tx);"
  "CREATE TABLE IF NOT EXISTS req(tx BIGINT NOT NULL, run BIGINT NOT NULL,"
  " request TEXT, PRIMARY KEY(tx, run));"
  /* several nodes: one row per node, its lease renewed while it lives */
  "CREATE TABLE IF NOT EXISTS nodes(name TEXT PRIMARY KEY,"
  " lease_until DOUBLE PRECISION, started DOUBLE PRECISION);"
  /* ids, one sequence per kind; each nextval is a block of HW_PG_ID_BLOCK */
  "CREATE SEQUENCE IF NOT EXISTS hw_ids_tx INCREMENT BY "
  HW_PG_STR(HW_PG_ID_BLOCK) ";"
  "CREATE SEQUENCE IF NOT EXISTS hw_ids_job INCREMENT BY "
  HW_PG_STR(HW_PG_ID_BLOCK) ";"
  "CREATE SEQUENCE IF NOT EXISTS hw_ids_hist INCREMENT BY "
  HW_PG_STR(HW_PG_ID_BLOCK) ";"
  "CREATE SEQUENCE IF NOT EXISTS hw_ids_early INCREMENT BY "
  HW_PG_STR(HW_PG_ID_BLOCK) ";"
  /* several nodes: the node running a transaction now (NODE#N, claimed
   * before a resumed run starts, cleared when the node has nothing of it
   * left), so runs of one transaction never overlap across nodes */
  "ALTER TABLE tx ADD COLUMN IF NOT EXISTS runner TEXT;"
  "CREATE INDEX IF NOT EXISTS tx_runner ON tx(runner)"
  " WHERE runner IS NOT NULL;";

/* hw_pg_migrations[v - 1] takes a database from version v - 1 to v. */
static const char *const hw_pg_migrations[] = {hw_pg_schema_v1};

/* The table that says which version a database has (one row). */
static const char hw_pg_version_sql[] =
  "CREATE TABLE IF NOT EXISTS schema_version(one INTEGER PRIMARY KEY"
  " CHECK (one = 1), version INTEGER NOT NULL,"
  " updated DOUBLE PRECISION NOT NULL)";

/* HW_ID_* order: the sequence each kind draws its blocks from */
static const char *const hw_pg_id_seq[] = {"hw_ids_tx", "hw_ids_job",
                                           "hw_ids_hist", "hw_ids_early"};

/* unix seconds as SQLite's strftime('%Y-%m-%dT%H:%M:%fZ', x, 'unixepoch')
 * renders them: UTC, milliseconds rounded */
#define HW_PG_ISO(col)                                                       \
  "to_char(to_timestamp(round((" col ") * 1000) / 1000) AT TIME ZONE 'UTC',"  \
  " 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* a value as JSON text, SQL NULL as null (what SQLite's json_object does) */
#define HW_PG_J(x) "coalesce(to_json(" x ")::text, 'null')"

typedef struct hw_pg_stmt_def_s {
  const char *name;
  const char *sql;
} hw_pg_stmt_def_t;

static const hw_pg_stmt_def_t hw_pg_stmts[] = {
  /* writes */
  {"tx_insert", "INSERT INTO tx(id, cycle, state, step, data, created,"
   " updated, runs, linked_cycle, linked_id, request)"
   " VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"},
  {"tx_ckpt", "UPDATE tx SET ckpt_step = $2, ckpt_data = $3 WHERE id = $1"},
  {"tx_update", "UPDATE tx SET state = $2, step = $3, data = $4,"
   " updated = $5, runs = greatest(runs, $6), error = $7, ckpt_step = NULL,"
   " ckpt_data = NULL, retry_at = NULL, attempt = NULL WHERE id = $1"},
  {"tx_run_end", "UPDATE tx SET data = $2, updated = $3,"
   " runs = greatest(runs, $4), error = $5 WHERE id = $1"},
  {"tx_park", "UPDATE tx SET state = 'waiting', step = $2, wait_step = $2,"
   " match_value = $3, parked_at = $4, expires_at = $5, snapshot = $6,"
   " data = $6, updated = $4, runs = greatest(runs, $7), error = NULL,"
   " ckpt_step = NULL, ckpt_data = NULL WHERE id = $1"},
  {"tx_expire", "UPDATE tx SET state = 'expired', updated = $2"
   " WHERE id = $1 AND state = 'waiting' AND expires_at IS NOT NULL"
   " AND expires_at <= $3"},
  {"tx_runs_bump", "UPDATE tx SET runs = greatest(runs, $2) WHERE id = $1"},
  {"early_insert", "INSERT INTO early(id, cycle, step, match_value,"
   " received, expires_at, data, request) VALUES($1,$2,$3,$4,$5,$6,$7,$8)"},
  {"early_delete", "DELETE FROM early WHERE id = $1"},
  {"sync_insert", "INSERT INTO sync_answers(tx, run, secret, hook, state,"
   " created) VALUES($1, $2, $3, $4, 'running', $5) ON CONFLICT DO NOTHING"},
  {"sync_answer", "UPDATE sync_answers SET state = 'done', status = $3,"
   " headers = $4, body = $5 WHERE tx = $1 AND run = $2"
   " AND state = 'running'"},
  {"sync_purge", "DELETE FROM sync_answers WHERE created < $1"},
  {"hist_insert", "INSERT INTO hist(tx, seq, run, entries)"
   " VALUES($1,$2,$3,$4)"},
  {"job_insert", "INSERT INTO jobs(id, tx, run, entry, data, request, base)"
   " VALUES($1,$2,$3,$4,$5,$6,$7)"},
  {"job_ckpt", "UPDATE jobs SET ckpt_step = $2, ckpt_data = $3"
   " WHERE id = $1"},
  {"job_delete", "DELETE FROM jobs WHERE id = $1"},
  {"req_insert", "INSERT INTO req(tx, run, request) VALUES($1,$2,$3)"
   " ON CONFLICT(tx, run) DO UPDATE SET request = excluded.request"},
  {"tx_retry_wait", "UPDATE tx SET ckpt_step = $2, ckpt_data = $3,"
   " retry_at = $4, attempt = $5, updated = $6 WHERE id = $1"},
  {"job_retry_wait", "UPDATE jobs SET ckpt_step = $2, ckpt_data = $3,"
   " retry_at = $4, attempt = $5 WHERE id = $1"},
  {"tx_failed_at", "UPDATE tx SET ckpt_step = $2, ckpt_data = $3"
   " WHERE id = $1 AND state = 'failed'"},
  /* (the retrying node owns the run: recovery and takeover find it) */
  {"tx_retry", "UPDATE tx SET state = 'running', step = $2, runs = $3,"
   " ckpt_step = $2, ckpt_data = $4, error = NULL, retry_at = NULL,"
   " attempt = NULL, updated = $5,"
   " owner = current_setting('hookwork.node', true)"
   " WHERE id = $1 AND state = 'failed'"},
  {"tx_cancel", "UPDATE tx SET state = 'cancelled', updated = $2,"
   " retry_at = NULL, ckpt_step = NULL, ckpt_data = NULL"
   " WHERE id = $1 AND state IN ('waiting', 'running')"},
  {"jobs_drop", "DELETE FROM jobs WHERE tx = $1"},
  {"tx_replay_of", "UPDATE tx SET replay_of = $2 WHERE id = $1"},
  /* $1: a JSON array of candidate ids (numbers or strings) */
  {"purge_tx", "DELETE FROM tx WHERE id IN (SELECT value::bigint FROM"
   " json_array_elements_text($1::json) AS value) AND state = $2"
   " AND updated < $3"},
  {"purge_hist", "DELETE FROM hist WHERE tx IN (SELECT value::bigint FROM"
   " json_array_elements_text($1::json) AS value)"
   " AND NOT EXISTS (SELECT 1 FROM tx WHERE tx.id = hist.tx)"},
  {"purge_req", "DELETE FROM req WHERE tx IN (SELECT value::bigint FROM"
   " json_array_elements_text($1::json) AS value)"
   " AND NOT EXISTS (SELECT 1 FROM tx WHERE tx.id = req.tx)"},
  {"purge_dedupe", "DELETE FROM dedupe WHERE tx IN (SELECT value::bigint"
   " FROM json_array_elements_text($1::json) AS value)"
   " AND NOT EXISTS (SELECT 1 FROM tx WHERE tx.id = dedupe.tx)"},
  /* OR IGNORE: any conflict (the key or the token) leaves the row */
  {"hook_insert", "INSERT INTO hooks(cycle, step, token) VALUES($1,$2,$3)"
   " ON CONFLICT DO NOTHING"},
  {"cycle_state", "INSERT INTO cycles(name, state) VALUES($1, $2)"
   " ON CONFLICT(name) DO UPDATE SET state = excluded.state"},
  {"connector_set", "INSERT INTO connectors(name, allowed_ips, file_sig)"
   " VALUES($1, $2, $3) ON CONFLICT(name) DO UPDATE SET"
   " allowed_ips = excluded.allowed_ips, file_sig = excluded.file_sig"},
  {"connector_delete", "DELETE FROM connectors WHERE name = $1"},
  {"store_probe", "INSERT INTO store_meta(k, v) VALUES('probe', $1::text)"
   " ON CONFLICT(k) DO UPDATE SET v = excluded.v"},
  {"dedupe_put", "INSERT INTO dedupe(cycle, step, key, tx, expires_at)"
   " VALUES($1, $2, $3, $4, $5) ON CONFLICT(cycle, step, key) DO UPDATE SET"
   " tx = excluded.tx, expires_at = excluded.expires_at, status = NULL,"
   " ctype = NULL, headers = NULL, body = NULL"},
  {"dedupe_answer", "UPDATE dedupe SET status = $5, ctype = $6,"
   " headers = $7, body = $8 WHERE cycle = $1 AND step = $2 AND key = $3"
   " AND tx = $4"},
  /* ctid for SQLite's rowid: small batches, as there */
  {"dedupe_purge", "DELETE FROM dedupe WHERE ctid = ANY(ARRAY(SELECT ctid"
   " FROM dedupe WHERE expires_at <= $1 LIMIT 1000))"},

  /* reads */
  {"hooks_all", "SELECT cycle, step, token FROM hooks"},
  {"cycles_all", "SELECT name, state FROM cycles"},
  {"connectors_all", "SELECT name, allowed_ips, file_sig FROM connectors"},
  {"max_ids", "SELECT (SELECT coalesce(max(id), 0) FROM tx) AS tx,"
   " (SELECT coalesce(max(id), 0) FROM jobs) AS job,"
   " (SELECT coalesce(max(seq), 0) FROM hist) AS hist,"
   " (SELECT coalesce(max(id), 0) FROM early) AS early"},
  {"jobs_all", "SELECT j.id, j.tx, j.run, j.entry, j.data, j.request,"
   " j.ckpt_step, j.ckpt_data, j.base, t.cycle, t.state, t.wait_step,"
   " j.retry_at, j.attempt"
   " FROM jobs j JOIN tx t ON t.id = j.tx ORDER BY j.id"},
  {"tx_running", "SELECT id, cycle, step AS entry, data, request,"
   " ckpt_step, ckpt_data, runs, retry_at, attempt FROM tx"
   " WHERE state = 'running' ORDER BY id"},
  /* several nodes: only this node's rows (NODE, or NODE+DEAD: taken over
   * from DEAD), the others' are theirs (nodes.lua) */
  {"recover_tx", "SELECT id, cycle, step AS entry, data, request,"
   " ckpt_step, ckpt_data, runs, retry_at, attempt FROM tx"
   " WHERE state = 'running' AND id > $1 AND split_part(owner, '+', 1) ="
   " current_setting('hookwork.node', true) ORDER BY id LIMIT $2"},
  {"recover_jobs", "SELECT j.id, j.tx, j.run, j.entry, j.data,"
   " j.request, j.ckpt_step, j.ckpt_data, j.base, t.cycle, t.state,"
   " t.wait_step, j.retry_at, j.attempt FROM jobs j JOIN tx t ON t.id = j.tx"
   " WHERE j.id > $1 AND split_part(j.owner, '+', 1) ="
   " current_setting('hookwork.node', true) ORDER BY j.id LIMIT $2"},
  {"tx_row", "SELECT id, cycle, state, step, runs, ckpt_step, ckpt_data,"
   " data, request, error FROM tx WHERE id = $1"},
  {"find_waiting", "SELECT id, snapshot, runs, expires_at FROM tx"
   " WHERE cycle = $1 AND wait_step = $2 AND match_value = $3"
   " AND state = 'waiting' AND (expires_at IS NULL OR expires_at > $4)"
   " ORDER BY parked_at DESC, id DESC LIMIT 1"},
  {"dedupe_due", "SELECT 1 AS due FROM dedupe WHERE expires_at <= $1"
   " LIMIT 1"},
  {"dedupe_get", "SELECT d.tx, d.status, d.ctype, d.headers, d.body,"
   " t.state, t.error FROM dedupe d LEFT JOIN tx t ON t.id = d.tx"
   " WHERE d.cycle = $1 AND d.step = $2 AND d.key = $3"
   " AND d.expires_at > $4"},
  {"tx_runs", "SELECT runs FROM tx WHERE id = $1"},
  {"find_waiting_desc", "SELECT id, snapshot, runs, parked_at FROM tx"
   " WHERE cycle = $1 AND wait_step = $2 AND match_value = $3"
   " AND state = 'waiting' AND (expires_at IS NULL OR expires_at > $4)"
   " ORDER BY parked_at DESC, id DESC LIMIT $5"},
  {"find_waiting_asc", "SELECT id, snapshot, runs, parked_at FROM tx"
   " WHERE cycle = $1 AND wait_step = $2 AND match_value = $3"
   " AND state = 'waiting' AND (expires_at IS NULL OR expires_at > $4)"
   " ORDER BY parked_at ASC, id ASC LIMIT $5"},
  {"tx_data", "SELECT data FROM tx WHERE id = $1"},
  {"early_for", "SELECT id, data, request, received, expires_at FROM early"
   " WHERE cycle = $1 AND step = $2 AND match_value = $3 AND expires_at > $4"
   " ORDER BY id LIMIT $5"},
  {"early_count", "SELECT count(*) AS n FROM early WHERE cycle = $1"
   " AND step = $2 AND match_value = $3"},
  {"early_expired", "SELECT id, cycle, step FROM early"
   " WHERE expires_at <= $1 ORDER BY expires_at LIMIT 1000"},
  {"sync_get", "SELECT state, status, headers, body FROM sync_answers"
   " WHERE tx = $1 AND secret = $2 AND hook = $3"},
  {"expired", "SELECT id FROM tx WHERE state = 'waiting'"
   " AND expires_at IS NOT NULL AND expires_at <= $1 LIMIT 1000"},
  {"counts", "SELECT cycle, state, count(*) AS n FROM tx"
   " GROUP BY cycle, state"},
  {"tx_list_json", "SELECT coalesce('[' || string_agg('{\"id\":' ||"
   " " HW_PG_J("id::text") " || ',\"cycle\":' || " HW_PG_J("cycle")
   " || ',\"state\":' || " HW_PG_J("state") " || ',\"step\":' || "
   HW_PG_J("step") " || ',\"match\":' || " HW_PG_J("match_value")
   " || ',\"runs\":' || " HW_PG_J("runs") " || ',\"created\":' || "
   HW_PG_J(HW_PG_ISO("created")) " || ',\"updated\":' || "
   HW_PG_J(HW_PG_ISO("updated")) " || '}', ',' ORDER BY id DESC) || ']',"
   " '[]') FROM (SELECT * FROM tx WHERE ($1::text IS NULL OR cycle = $1)"
   " AND ($2::text IS NULL OR state = $2) ORDER BY id DESC LIMIT $3) AS t"},
  {"tx_get_json", "SELECT '{\"id\":' || " HW_PG_J("id::text")
   " || ',\"cycle\":' || " HW_PG_J("cycle") " || ',\"state\":' || "
   HW_PG_J("state") " || ',\"step\":' || " HW_PG_J("step")
   " || ',\"data\":' || coalesce(data, '{}') || ',\"runs\":' || "
   HW_PG_J("runs") " || ',\"match\":' || " HW_PG_J("match_value")
   " || ',\"error\":' || " HW_PG_J("error") " || ',\"created\":' || "
   HW_PG_J(HW_PG_ISO("created")) " || ',\"updated\":' || "
   HW_PG_J(HW_PG_ISO("updated")) " || ',\"expires\":' || "
   HW_PG_J(HW_PG_ISO("expires_at")) " || ',\"linked_from\":' ||"
   " CASE WHEN linked_cycle IS NULL THEN 'null' ELSE '{\"cycle\":' || "
   HW_PG_J("linked_cycle") " || ',\"id\":' || " HW_PG_J("linked_id::text")
   " || ',\"transaction\":' || " HW_PG_J("linked_id::text") " || '}' END"
   " || ',\"history\":' || (SELECT coalesce('[' || string_agg('{\"step\":'"
   " || " HW_PG_J("e.v ->> 0") " || ',\"run\":' || " HW_PG_J("h.run")
   " || ',\"started\":' || "
   HW_PG_J(HW_PG_ISO("(e.v ->> 1)::double precision / 1000.0"))
   " || ',\"ended\":' || "
   HW_PG_J(HW_PG_ISO("(e.v ->> 2)::double precision / 1000.0"))
   " || ',\"status\":' || " HW_PG_J("e.v ->> 3") " || ',\"error\":' || "
   HW_PG_J("e.v ->> 4") " || ',\"note\":' || " HW_PG_J("e.v ->> 5")
   " || '}', ',' ORDER BY h.seq, e.n) || ']', '[]') FROM hist h,"
   " json_array_elements(h.entries::json) WITH ORDINALITY AS e(v, n)"
   " WHERE h.tx = $1) || '}' FROM tx WHERE id = $1"},

  /* several nodes (lua/hookwork/nodes.lua; docs/ARCHITECTURE.md).  Times
   * of leases are the database's clock, unix seconds. */
  /* a claim is released after the run's own writes (a write): only the
   * claim with this token, never a later one */
  {"tx_run_release", "UPDATE tx SET runner = NULL WHERE id = $1"
   " AND runner = $2"},
  /* a dedupe claim whose request was not accepted (or not stored) */
  {"dedupe_release", "DELETE FROM dedupe WHERE cycle = $1 AND step = $2"
   " AND key = $3 AND (tx < 0 OR tx = $4)"},
  /* a node (re)joins: its lease, and no claim of its from before */
  {"node_join", "WITH r AS (UPDATE tx SET runner = NULL WHERE runner IS NOT"
   " NULL AND split_part(runner, '#', 1) = $1::text)"
   " INSERT INTO nodes(name, lease_until, started) VALUES($1::text,"
   " extract(epoch FROM clock_timestamp())::double precision"
   " + $2::double precision,"
   " extract(epoch FROM clock_timestamp())::double precision)"
   " ON CONFLICT(name) DO UPDATE SET lease_until = excluded.lease_until,"
   " started = excluded.started RETURNING lease_until"},
  /* no row: the node was taken over */
  {"node_renew", "UPDATE nodes SET lease_until = extract(epoch FROM"
   " clock_timestamp())::double precision + $2::double precision"
   " WHERE name = $1::text RETURNING lease_until"},
  {"nodes_list", "SELECT name, lease_until, (lease_until < extract(epoch"
   " FROM clock_timestamp())::double precision)::int AS dead FROM nodes"
   " ORDER BY name"},
  /* $1 the dead node, $2 the taker: one statement, so one taker wins;
   * its running transactions and jobs (its own and those it had taken
   * over) become TAKER+DEAD's */
  {"node_takeover", "WITH d AS (DELETE FROM nodes WHERE name = $1::text"
   " AND lease_until < extract(epoch FROM clock_timestamp())::double"
   " precision RETURNING name),"
   " t AS (UPDATE tx SET owner = $2::text || '+' || $1::text"
   " WHERE state = 'running' AND split_part(owner, '+', 1) = $1::text"
   " AND EXISTS (SELECT 1 FROM d) RETURNING id),"
   " j AS (UPDATE jobs SET owner = $2::text || '+' || $1::text"
   " WHERE split_part(owner, '+', 1) = $1::text AND EXISTS (SELECT 1 FROM d)"
   " RETURNING id)"
   " SELECT (SELECT count(*) FROM d) AS claimed, (SELECT count(*) FROM t)"
   " AS txs, (SELECT count(*) FROM j) AS jobs"},
  /* the taken-over rows, a page at a time, as recover_tx/recover_jobs */
  {"takeover_tx", "SELECT id, cycle, step AS entry, data, request,"
   " ckpt_step, ckpt_data, runs, retry_at, attempt FROM tx"
   " WHERE state = 'running' AND owner = $1::text AND id > $2"
   " ORDER BY id LIMIT $3"},
  {"takeover_jobs", "SELECT j.id, j.tx, j.run, j.entry, j.data,"
   " j.request, j.ckpt_step, j.ckpt_data, j.base, t.cycle, t.state,"
   " t.wait_step, j.retry_at, j.attempt FROM jobs j JOIN tx t ON t.id = j.tx"
   " WHERE j.owner = $1::text AND j.id > $2 ORDER BY j.id LIMIT $3"},
  /* $2 = NODE#N.  state: claimed (the transaction's state); else held
   * elsewhere (runner: by whom, as the statement's snapshot saw it, which
   * may be before a claim it waited for), or present = 0: no such
   * transaction */
  {"tx_run_claim", "WITH c AS (UPDATE tx SET runner = $2::text WHERE id = $1"
   " AND (runner IS NULL OR split_part(runner, '#', 1) ="
   " split_part($2::text, '#', 1) OR NOT EXISTS (SELECT 1 FROM nodes n"
   " WHERE n.name = split_part(tx.runner, '#', 1))) RETURNING state)"
   " SELECT (SELECT state FROM c) AS state,"
   " (SELECT runner FROM tx WHERE id = $1) AS runner,"
   " (SELECT count(*) FROM tx WHERE id = $1) AS present"},
  {"tx_runs_next", "UPDATE tx SET runs = runs + 1 WHERE id = $1"
   " RETURNING runs"},
  /* $1: a JSON array of ids */
  {"tx_cancelled_among", "SELECT id FROM tx WHERE id IN (SELECT"
   " value::bigint FROM json_array_elements_text($1::json) AS value)"
   " AND state = 'cancelled'"},
  /* the first node's token is everyone's */
  {"hook_claim", "INSERT INTO hooks(cycle, step, token) VALUES($1, $2, $3)"
   " ON CONFLICT(cycle, step) DO UPDATE SET token = hooks.token"
   " RETURNING token"},
  /* insert-if-absent: $4 is -(claim time); an expired key, or a claim
   * older than $7 s whose request never committed, is taken again */
  {"dedupe_claim", "INSERT INTO dedupe(cycle, step, key, tx, expires_at)"
   " VALUES($1, $2, $3, $4, $5) ON CONFLICT(cycle, step, key) DO UPDATE SET"
   " tx = excluded.tx, expires_at = excluded.expires_at, status = NULL,"
   " ctype = NULL, headers = NULL, body = NULL WHERE dedupe.expires_at <= $6"
   " OR (dedupe.tx < 0 AND -dedupe.tx < $6 - $7) RETURNING tx"},
};

#define HW_PG_NSTMTS ((int) (sizeof hw_pg_stmts / sizeof hw_pg_stmts[0]))

#endif
