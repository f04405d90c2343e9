/* store_sql: the schema and every statement the store prepares, by name.
 * Included only by store.c.  Timestamps are unix seconds (REAL); the admin
 * queries render them as ISO 8601. */
#ifndef HW_STORE_SQL_H
#define HW_STORE_SQL_H

#define HW_SCHEMA_VERSION 2
#define HW_STR_(x) #x
#define HW_STR(x) HW_STR_(x)

static const char hw_schema_sql[] =
  "CREATE TABLE IF NOT EXISTS hooks(cycle TEXT NOT NULL, step TEXT NOT NULL,"
  " token TEXT NOT NULL UNIQUE, PRIMARY KEY(cycle, step));"
  "CREATE TABLE IF NOT EXISTS cycles(name TEXT PRIMARY KEY, state TEXT NOT NULL);"
  "CREATE TABLE IF NOT EXISTS connectors(name TEXT PRIMARY KEY,"
  " allowed_ips TEXT NOT NULL, file_sig TEXT);"
  "CREATE TABLE IF NOT EXISTS tx(id INTEGER PRIMARY KEY, cycle TEXT NOT NULL,"
  " state TEXT NOT NULL, step TEXT, data TEXT, created REAL, updated REAL,"
  " runs INTEGER NOT NULL DEFAULT 1, linked_cycle TEXT, linked_id INTEGER,"
  " wait_step TEXT, match_value TEXT, parked_at REAL, expires_at REAL,"
  " snapshot TEXT, error TEXT, request TEXT, ckpt_step TEXT, ckpt_data TEXT,"
  " replay_of INTEGER, retry_at REAL, attempt INTEGER);"
  "CREATE INDEX IF NOT EXISTS tx_wait ON tx(cycle, wait_step, match_value,"
  " parked_at) WHERE state = 'waiting';"
  "CREATE INDEX IF NOT EXISTS tx_exp ON tx(expires_at)"
  " WHERE state = 'waiting' AND expires_at IS NOT NULL;"
  "CREATE INDEX IF NOT EXISTS tx_cycle ON tx(cycle, state);"
  /* search by Webhook Mapping value (?match=): only parked rows have one */
  "CREATE INDEX IF NOT EXISTS tx_match ON tx(match_value)"
  " WHERE match_value IS NOT NULL;"
  "DROP INDEX IF EXISTS tx_state;"
  /* one row per flush of a run's history: entries is a JSON array of
   * [step, started ms, ended ms, status, error, note].  Clustered by transaction
   * (WITHOUT ROWID), so a resume of an old transaction dirties one page of
   * history, not a table page and an index page. */
  "CREATE TABLE IF NOT EXISTS hist(tx INTEGER NOT NULL, seq INTEGER NOT NULL,"
  " run INTEGER, entries TEXT NOT NULL, PRIMARY KEY(tx, seq)) WITHOUT ROWID;"
  "CREATE TABLE IF NOT EXISTS jobs(id INTEGER PRIMARY KEY, tx INTEGER NOT NULL,"
  " run INTEGER, entry TEXT, data TEXT, request TEXT, ckpt_step TEXT,"
  " ckpt_data TEXT, base TEXT, retry_at REAL, attempt INTEGER);"
  /* requests kept by a webhook's `early` window until a transaction parks
   * there with their match value (then they become jobs) or the window
   * ends (then they are dropped) */
  "CREATE TABLE IF NOT EXISTS early(id INTEGER PRIMARY KEY, cycle TEXT NOT NULL,"
  " step TEXT NOT NULL, match_value TEXT NOT NULL, received REAL NOT NULL,"
  " expires_at REAL NOT NULL, data TEXT, request TEXT);"
  "CREATE INDEX IF NOT EXISTS early_key ON early(cycle, step, match_value, id);"
  "CREATE INDEX IF NOT EXISTS early_exp ON early(expires_at);"
  /* answers kept for callers that got 202 + status_url at sync_timeout
   * (on_sync_timeout = "accept"): one per run, state 'running' until the
   * respond step (or the run's end) fills it in */
  "CREATE TABLE IF NOT EXISTS sync_answers(tx INTEGER NOT NULL,"
  " run INTEGER NOT NULL, secret TEXT NOT NULL, hook TEXT NOT NULL,"
  " state TEXT NOT NULL, status INTEGER, headers TEXT, body BLOB,"
  " created REAL NOT NULL, PRIMARY KEY(tx, run)) WITHOUT ROWID;"
  "CREATE INDEX IF NOT EXISTS sync_answers_created ON sync_answers(created);"
  /* the writer's probe row: after a failed commit it commits here first, so
   * the WAL frames of the failed commit are overwritten (they could
   * otherwise be read back as committed after a crash) and it learns that
   * the disk works again */
  "CREATE TABLE IF NOT EXISTS store_meta(k TEXT PRIMARY KEY, v);"
  /* dedupe keys of webhooks with `dedupe`: written in the same commit as
   * the request they accepted; status..body is the answer a synchronous
   * first delivery got (NULL while it runs, and for fire-and-forget) */
  "CREATE TABLE IF NOT EXISTS dedupe(cycle TEXT NOT NULL, step TEXT NOT NULL,"
  " key TEXT NOT NULL, tx INTEGER NOT NULL, expires_at REAL NOT NULL,"
  " status INTEGER, ctype TEXT, headers TEXT, body BLOB,"
  " PRIMARY KEY(cycle, step, key));"
  "CREATE INDEX IF NOT EXISTS dedupe_exp ON dedupe(expires_at);"
  /* retention deletes the keys of purged transactions by tx */
  "CREATE INDEX IF NOT EXISTS dedupe_tx ON dedupe(tx);"
  /* the request of every resumed run (a trigger's is tx.request): kept
   * after the run's job row is gone, shown by the admin API, purged with
   * the transaction */
  "CREATE TABLE IF NOT EXISTS req(tx INTEGER NOT NULL, run INTEGER NOT NULL,"
  " request TEXT, PRIMARY KEY(tx, run)) WITHOUT ROWID;";

#define HW_ISO(col) "strftime('%Y-%m-%dT%H:%M:%fZ', " col ", 'unixepoch')"

/* Each statement declares how many values it binds: the store checks it
 * against SQLite's own count when preparing (a mismatch refuses to open)
 * and against the number given at every call (a mismatch is an error). */
typedef struct hw_stmt_def_s {
  const char *name;
  int write;
  int nparams;
  const char *sql;
} hw_stmt_def_t;

static const hw_stmt_def_t hw_stmts[] = {
  /* writes: executed by the batch worker on the writer connection */
  /* a transaction's first run is the row itself while state = 'running':
   * its request and checkpoint live here, so a trigger costs no job row */
  {"tx_insert", 1, 11, "INSERT INTO tx(id, cycle, state, step, data, created,"
   " updated, runs, linked_cycle, linked_id, request)"
   " VALUES(?,?,?,?,?,?,?,?,?,?,?)"},
  {"tx_ckpt", 1, 3, "UPDATE tx SET ckpt_step = ?2, ckpt_data = ?3 WHERE id = ?1"},
  {"tx_update", 1, 7, "UPDATE tx SET state = ?2, step = ?3, data = ?4,"
   " updated = ?5, runs = max(runs, ?6), error = ?7, ckpt_step = NULL,"
   " ckpt_data = NULL, retry_at = NULL, attempt = NULL WHERE id = ?1"},
  /* a later run of a waiting transaction ends: state and step stay, and
   * are left out of SET so SQLite does not rewrite their index entries */
  {"tx_run_end", 1, 5, "UPDATE tx SET data = ?2, updated = ?3,"
   " runs = max(runs, ?4), error = ?5 WHERE id = ?1"},
  {"tx_park", 1, 7, "UPDATE tx SET state = 'waiting', step = ?2, wait_step = ?2,"
   " match_value = ?3, parked_at = ?4, expires_at = ?5, snapshot = ?6,"
   " data = ?6, updated = ?4, runs = max(runs, ?7), error = NULL,"
   " ckpt_step = NULL, ckpt_data = NULL WHERE id = ?1"},
  /* checks the deadline again when it runs: a run that re-parked the
   * transaction at a later webhook since the expiry query keeps it waiting */
  {"tx_expire", 1, 3, "UPDATE tx SET state = 'expired', updated = ?2"
   " WHERE id = ?1 AND state = 'waiting' AND expires_at IS NOT NULL"
   " AND expires_at <= ?3"},
  /* run numbers are taken at accept time: the row knows the highest one
   * handed out even while those runs wait in a queue */
  {"tx_runs_bump", 1, 2, "UPDATE tx SET runs = max(runs, ?2) WHERE id = ?1"},
  {"early_insert", 1, 8, "INSERT INTO early(id, cycle, step, match_value,"
   " received, expires_at, data, request) VALUES(?,?,?,?,?,?,?,?)"},
  {"early_delete", 1, 1, "DELETE FROM early WHERE id = ?1"},
  {"sync_insert", 1, 5, "INSERT OR IGNORE INTO sync_answers(tx, run, secret,"
   " hook, state, created) VALUES(?1, ?2, ?3, ?4, 'running', ?5)"},
  {"sync_answer", 1, 5, "UPDATE sync_answers SET state = 'done', status = ?3,"
   " headers = ?4, body = ?5 WHERE tx = ?1 AND run = ?2"
   " AND state = 'running'"},
  {"sync_purge", 1, 1, "DELETE FROM sync_answers WHERE created < ?1"},
  {"hist_insert", 1, 4, "INSERT INTO hist(tx, seq, run, entries)"
   " VALUES(?,?,?,?)"},
  {"job_insert", 1, 7, "INSERT INTO jobs(id, tx, run, entry, data, request, base)"
   " VALUES(?,?,?,?,?,?,?)"},
  {"job_ckpt", 1, 3, "UPDATE jobs SET ckpt_step = ?2, ckpt_data = ?3"
   " WHERE id = ?1"},
  {"job_delete", 1, 1, "DELETE FROM jobs WHERE id = ?1"},
  /* operations on stored work (ops.lua) */
  {"req_insert", 1, 3, "INSERT OR REPLACE INTO req(tx, run, request)"
   " VALUES(?,?,?)"},
  /* a step waits to be tried again: where to go on from, and when */
  {"tx_retry_wait", 1, 6, "UPDATE tx SET ckpt_step = ?2, ckpt_data = ?3,"
   " retry_at = ?4, attempt = ?5, updated = ?6 WHERE id = ?1"},
  {"job_retry_wait", 1, 5, "UPDATE jobs SET ckpt_step = ?2, ckpt_data = ?3,"
   " retry_at = ?4, attempt = ?5 WHERE id = ?1"},
  /* a failed transaction keeps the step it failed at and the data that
   * step began with, for POST /api/transactions/ID/retry */
  {"tx_failed_at", 1, 3, "UPDATE tx SET ckpt_step = ?2, ckpt_data = ?3"
   " WHERE id = ?1 AND state = 'failed'"},
  {"tx_retry", 1, 5, "UPDATE tx SET state = 'running', step = ?2, runs = ?3,"
   " ckpt_step = ?2, ckpt_data = ?4, error = NULL, retry_at = NULL,"
   " attempt = NULL, updated = ?5 WHERE id = ?1 AND state = 'failed'"},
  {"tx_cancel", 1, 2, "UPDATE tx SET state = 'cancelled', updated = ?2,"
   " retry_at = NULL, ckpt_step = NULL, ckpt_data = NULL"
   " WHERE id = ?1 AND state IN ('waiting', 'running')"},
  {"jobs_drop", 1, 1, "DELETE FROM jobs WHERE tx = ?1"},
  {"tx_replay_of", 1, 2, "UPDATE tx SET replay_of = ?2 WHERE id = ?1"},
  /* retention: ?1 a JSON array of candidate ids; the row is checked again
   * (a retry may have made it running since), then what hangs off it */
  {"purge_tx", 1, 3, "DELETE FROM tx WHERE id IN (SELECT value FROM"
   " json_each(?1)) AND state = ?2 AND updated < ?3"},
  {"purge_hist", 1, 1, "DELETE FROM hist WHERE tx IN (SELECT value FROM"
   " json_each(?1)) AND NOT EXISTS (SELECT 1 FROM tx WHERE tx.id = hist.tx)"},
  {"purge_req", 1, 1, "DELETE FROM req WHERE tx IN (SELECT value FROM"
   " json_each(?1)) AND NOT EXISTS (SELECT 1 FROM tx WHERE tx.id = req.tx)"},
  {"purge_dedupe", 1, 1, "DELETE FROM dedupe WHERE tx IN (SELECT value FROM"
   " json_each(?1)) AND NOT EXISTS (SELECT 1 FROM tx WHERE tx.id = dedupe.tx)"},
  {"hook_insert", 1, 3, "INSERT OR IGNORE INTO hooks(cycle, step, token)"
   " VALUES(?,?,?)"},
  {"cycle_state", 1, 2, "INSERT INTO cycles(name, state) VALUES(?1, ?2)"
   " ON CONFLICT(name) DO UPDATE SET state = excluded.state"},
  {"connector_set", 1, 3, "INSERT INTO connectors(name, allowed_ips, file_sig)"
   " VALUES(?1, ?2, ?3) ON CONFLICT(name) DO UPDATE SET"
   " allowed_ips = excluded.allowed_ips, file_sig = excluded.file_sig"},
  {"connector_delete", 1, 1, "DELETE FROM connectors WHERE name = ?1"},
  {"store_probe", 1, 1, "INSERT INTO store_meta(k, v) VALUES('probe', ?1)"
   " ON CONFLICT(k) DO UPDATE SET v = excluded.v"},
  /* a key seen again after its window starts over */
  {"dedupe_put", 1, 5, "INSERT INTO dedupe(cycle, step, key, tx, expires_at)"
   " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(cycle, step, key) DO UPDATE SET"
   " tx = excluded.tx, expires_at = excluded.expires_at, status = NULL,"
   " ctype = NULL, headers = NULL, body = NULL"},
  {"dedupe_answer", 1, 8, "UPDATE dedupe SET status = ?5, ctype = ?6,"
   " headers = ?7, body = ?8 WHERE cycle = ?1 AND step = ?2 AND key = ?3"
   " AND tx = ?4"},
  /* in small batches, so a purge never holds the writer long */
  {"dedupe_purge", 1, 1, "DELETE FROM dedupe WHERE rowid IN (SELECT rowid"
   " FROM dedupe WHERE expires_at <= ?1 LIMIT 1000)"},

  /* reads: the loop thread, reader connection */
  {"hooks_all", 0, 0, "SELECT cycle, step, token FROM hooks"},
  {"cycles_all", 0, 0, "SELECT name, state FROM cycles"},
  {"connectors_all", 0, 0, "SELECT name, allowed_ips, file_sig FROM connectors"},
  /* columns in HW_ID_* order: the store's id counters start from them */
  {"max_ids", 0, 0, "SELECT (SELECT coalesce(max(id), 0) FROM tx) AS tx,"
   " (SELECT coalesce(max(id), 0) FROM jobs) AS job,"
   " (SELECT coalesce(max(seq), 0) FROM hist) AS hist,"
   " (SELECT coalesce(max(id), 0) FROM early) AS early"},
  {"jobs_all", 0, 0, "SELECT j.id, j.tx, j.run, j.entry, j.data, j.request,"
   " j.ckpt_step, j.ckpt_data, j.base, t.cycle, t.state, t.wait_step,"
   " j.retry_at, j.attempt"
   " FROM jobs j JOIN tx t ON t.id = j.tx ORDER BY j.id"},
  {"tx_running", 0, 0, "SELECT id, cycle, step AS entry, data, request,"
   " ckpt_step, ckpt_data, runs, retry_at, attempt FROM tx"
   " WHERE state = 'running' ORDER BY id"},
  /* recovery reads the backlog a page at a time (id > ?1, at most ?2) */
  {"recover_tx", 0, 2, "SELECT id, cycle, step AS entry, data, request,"
   " ckpt_step, ckpt_data, runs, retry_at, attempt FROM tx"
   " WHERE state = 'running' AND id > ?1 ORDER BY id LIMIT ?2"},
  {"recover_jobs", 0, 2, "SELECT j.id, j.tx, j.run, j.entry, j.data,"
   " j.request, j.ckpt_step, j.ckpt_data, j.base, t.cycle, t.state,"
   " t.wait_step, j.retry_at, j.attempt FROM jobs j JOIN tx t ON t.id = j.tx"
   " WHERE j.id > ?1 ORDER BY j.id"
   " LIMIT ?2"},
  {"tx_row", 0, 1, "SELECT id, cycle, state, step, runs, ckpt_step, ckpt_data,"
   " data, request, error FROM tx WHERE id = ?1"},
  {"find_waiting", 0, 4, "SELECT id, snapshot, runs, expires_at FROM tx"
   " WHERE cycle = ?1 AND wait_step = ?2 AND match_value = ?3"
   " AND state = 'waiting' AND (expires_at IS NULL OR expires_at > ?4)"
   " ORDER BY parked_at DESC, id DESC LIMIT 1"},
  {"dedupe_due", 0, 1, "SELECT 1 AS due FROM dedupe WHERE expires_at <= ?1"
   " LIMIT 1"},
  {"dedupe_get", 0, 4, "SELECT d.tx, d.status, d.ctype, d.headers, d.body,"
   " t.state, t.error FROM dedupe d LEFT JOIN tx t ON t.id = d.tx"
   " WHERE d.cycle = ?1 AND d.step = ?2 AND d.key = ?3"
   " AND d.expires_at > ?4"},
  /* the highest run number handed out (a park not yet committed may be
   * behind the row) */
  {"tx_runs", 0, 1, "SELECT runs FROM tx WHERE id = ?1"},
  /* candidates for a match, newest or oldest first (the caller skips
   * those that have moved on in writes not yet committed) */
  {"find_waiting_desc", 0, 5, "SELECT id, snapshot, runs, parked_at FROM tx"
   " WHERE cycle = ?1 AND wait_step = ?2 AND match_value = ?3"
   " AND state = 'waiting' AND (expires_at IS NULL OR expires_at > ?4)"
   " ORDER BY parked_at DESC, id DESC LIMIT ?5"},
  {"find_waiting_asc", 0, 5, "SELECT id, snapshot, runs, parked_at FROM tx"
   " WHERE cycle = ?1 AND wait_step = ?2 AND match_value = ?3"
   " AND state = 'waiting' AND (expires_at IS NULL OR expires_at > ?4)"
   " ORDER BY parked_at ASC, id ASC LIMIT ?5"},
  /* the data a `resume_with = "latest"` run starts from */
  {"tx_data", 0, 1, "SELECT data FROM tx WHERE id = ?1"},
  {"early_for", 0, 5, "SELECT id, data, request, received, expires_at FROM early"
   " WHERE cycle = ?1 AND step = ?2 AND match_value = ?3 AND expires_at > ?4"
   " ORDER BY id LIMIT ?5"},
  {"early_count", 0, 3, "SELECT count(*) AS n FROM early WHERE cycle = ?1"
   " AND step = ?2 AND match_value = ?3"},
  {"early_expired", 0, 1, "SELECT id, cycle, step FROM early"
   " WHERE expires_at <= ?1 ORDER BY expires_at LIMIT 1000"},
  {"sync_get", 0, 3, "SELECT state, status, headers, body FROM sync_answers"
   " WHERE tx = ?1 AND secret = ?2 AND hook = ?3"},
  {"expired", 0, 1, "SELECT id FROM tx WHERE state = 'waiting'"
   " AND expires_at IS NOT NULL AND expires_at <= ?1 LIMIT 1000"},
  {"counts", 0, 0, "SELECT cycle, state, count(*) AS n FROM tx"
   " GROUP BY cycle, state"},
  {"tx_list_json", 0, 3, "SELECT coalesce(json_group_array(json_object("
   "'id', CAST(id AS TEXT), 'cycle', cycle, 'state', state, 'step', step,"
   " 'match', match_value, 'runs', runs,"
   " 'created', " HW_ISO("created") ", 'updated', " HW_ISO("updated") ")),"
   " '[]') FROM (SELECT * FROM tx WHERE (?1 IS NULL OR cycle = ?1)"
   " AND (?2 IS NULL OR state = ?2) ORDER BY id DESC LIMIT ?3)"},
  {"tx_get_json", 0, 1, "SELECT json_object('id', CAST(id AS TEXT),"
   " 'cycle', cycle, 'state', state, 'step', step,"
   " 'data', json(coalesce(data, '{}')), 'runs', runs, 'match', match_value,"
   " 'error', error, 'created', " HW_ISO("created") ","
   " 'updated', " HW_ISO("updated") ","
   " 'expires', CASE WHEN expires_at IS NULL THEN NULL ELSE "
   HW_ISO("expires_at") " END,"
   " 'linked_from', CASE WHEN linked_cycle IS NULL THEN NULL ELSE"
   " json_object('cycle', linked_cycle, 'id', CAST(linked_id AS TEXT),"
   " 'transaction', CAST(linked_id AS TEXT)) END,"
   " 'history', (SELECT coalesce(json_group_array(json_object("
   "'step', v ->> 0, 'run', run, 'started', " HW_ISO("(v ->> 1) / 1000.0") ","
   " 'ended', " HW_ISO("(v ->> 2) / 1000.0") ", 'status', v ->> 3,"
   " 'error', v ->> 4, 'note', v ->> 5)), '[]') FROM (SELECT h.run,"
   " e.value AS v FROM hist h, json_each(h.entries) e WHERE h.tx = ?1"
   " ORDER BY h.seq, e.key))) FROM tx WHERE id = ?1"},

  /* several nodes (lua/hookwork/nodes.lua): PostgreSQL only.  No SQL here
   * (NULL): SQLite prepares nothing for them and refuses to run them; the
   * entries fix the name, kind and value count store_sql_pg.h matches. */
  {"tx_run_release", 1, 2, NULL},
  {"dedupe_release", 1, 4, NULL},
  {"node_join", 0, 2, NULL},
  {"node_renew", 0, 2, NULL},
  {"nodes_list", 0, 0, NULL},
  {"node_takeover", 0, 2, NULL},
  {"takeover_tx", 0, 3, NULL},
  {"takeover_jobs", 0, 3, NULL},
  {"tx_run_claim", 0, 2, NULL},
  {"tx_runs_next", 0, 1, NULL},
  {"tx_cancelled_among", 0, 1, NULL},
  {"hook_claim", 0, 3, NULL},
  {"dedupe_claim", 0, 7, NULL},
};

#define HW_NSTMTS ((int) (sizeof hw_stmts / sizeof hw_stmts[0]))

#endif
