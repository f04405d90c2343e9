/* reader_pg: the PostgreSQL side of the reader thread (reader.c).
 *
 * Owns: one blocking libpq connection (it lives on the reader thread, off
 * the loop, so blocking is fine there), a small cache of prepared
 * statements by SQL text, and the translation of SQLite-style placeholders
 * (`?`, `?N`) to PostgreSQL's `$N`, so one Lua caller can write `?N` for
 * both backends.
 *
 * Values: parameters go as text with their types left to the server (the
 * PostgreSQL statements cast where the context does not say, e.g.
 * `?1::text IS NULL`); result columns come back as the SQLite reader gives
 * them: int2/int4/int8/oid/bool -> integer, float4/float8 -> real, numeric
 * -> integer when integral else real, bytea -> bytes, anything else (text,
 * json, jsonb, ...) -> text, NULL -> nil.
 *
 * Uses: reader.h (result layout), libpq.
 */
#ifndef HW_READER_PG_H
#define HW_READER_PG_H

#include <stddef.h>

#include "reader.h"

typedef struct hw_reader_pg_s hw_reader_pg_t;

/* Connects (read-only session) to the PostgreSQL store at url. */
int hw_reader_pg_open(const char *url, hw_reader_pg_t **out, char *err,
                      size_t errlen);

/* Runs sql with n values into res (rows at most maxrows).  0, or
 * -EINVAL (the statement does not prepare), -EIO (it fails), -E2BIG,
 * -ENOMEM, with res->errmsg set.  A connection lost since the last query
 * is reopened once. */
int hw_reader_pg_run(hw_reader_pg_t *pg, const char *sql, const hw_val_t *vals,
                     int n, int maxrows, hw_reader_res_t *res);

void hw_reader_pg_close(hw_reader_pg_t *pg);

/* Copies sql to out with every `?` / `?N` outside string literals, quoted
 * identifiers, dollar quotes and comments written as `$N` (a bare `?` takes
 * the number after the highest so far, as in SQLite).  *nparams gets the
 * highest number used.  0, or -ENOSPC when out is too small, -EINVAL on a
 * placeholder number out of range (1..999).  So a `?` in PostgreSQL text
 * is always a placeholder: jsonb's `?`, `?|`, `?&` operators are written
 * jsonb_exists(), jsonb_exists_any(), jsonb_exists_all(). */
int hw_reader_pg_translate(const char *sql, char *out, size_t outlen,
                           int *nparams);

#endif
