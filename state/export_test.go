package state

// Exported for the external tests of the in-place upgrade only.

// SQLiteSchemaV2 is the schema this package created before fingerprints
// (migrations 1 and 2), kept so that tests can build a ledger as an older
// worker left it and check that it upgrades in place.
var SQLiteSchemaV2 = sqliteDialect.tokens(schema[0]) + "\n" + sqliteDialect.tokens(schema[1]) +
	"\nCREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (2);"

// PostgresSchemaV2 is the schema this package created before fingerprints
// (migrations 1 and 2), for tests of the in-place upgrade.
var PostgresSchemaV2 = pgDialect.tokens(schema[0]) + "\n" + pgDialect.tokens(schema[1]) +
	"\nCREATE TABLE ihr_worker_schema (version INTEGER NOT NULL); INSERT INTO ihr_worker_schema VALUES (2);"
