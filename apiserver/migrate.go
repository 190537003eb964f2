package apiserver

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// migrations are applied in order, each in its own transaction, and
// recorded in schema_migrations. Never edit a released entry: append.
// Timestamps are Unix seconds (BIGINT) in both engines so comparisons and
// ordering are identical; booleans are INTEGER 0/1 for the same reason.
var migrations = []string{
	// 1: the schema.
	`CREATE TABLE users (
		id {{pk}},
		login TEXT NOT NULL UNIQUE
	);
	CREATE TABLE integrations (
		id {{pk}},
		code TEXT NOT NULL UNIQUE,
		name TEXT NOT NULL UNIQUE,
		business_object TEXT,
		direction TEXT,
		end_system TEXT,
		end_system_type TEXT,
		integration_type TEXT,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE integration_contacts (
		id {{pk}},
		integration_id BIGINT NOT NULL REFERENCES integrations(id),
		name TEXT,
		email TEXT,
		contact_alert_type TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX integration_contacts_integration ON integration_contacts (integration_id);
	CREATE TABLE integration_runs (
		id {{pk}},
		integration_id BIGINT NOT NULL REFERENCES integrations(id),
		status TEXT NOT NULL,
		total_records BIGINT,
		start_time BIGINT,
		end_time BIGINT,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX integration_runs_integration ON integration_runs (integration_id);
	CREATE TABLE integration_history_records (
		id {{pk}},
		contact_alert_type TEXT,
		creation_method TEXT,
		document_id BIGINT,
		document_revision BIGINT,
		document_status TEXT,
		document_type TEXT,
		external_id TEXT,
		integration_id BIGINT REFERENCES integrations(id),
		integration_run_id BIGINT,
		integration_filename TEXT,
		resolved INTEGER NOT NULL DEFAULT 0,
		status TEXT,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL,
		created_by_id BIGINT,
		created_by_login TEXT,
		updated_by_id BIGINT,
		updated_by_login TEXT
	);
	CREATE INDEX ihr_filename_external ON integration_history_records (integration_filename, external_id);
	CREATE INDEX ihr_document ON integration_history_records (document_type, document_id, resolved);
	CREATE INDEX ihr_external ON integration_history_records (external_id);
	CREATE INDEX ihr_created ON integration_history_records (created_at);
	CREATE INDEX ihr_updated ON integration_history_records (updated_at);
	CREATE INDEX ihr_integration ON integration_history_records (integration_id);
	CREATE TABLE record_responses (
		id {{pk}},
		record_id BIGINT NOT NULL REFERENCES integration_history_records(id),
		response_code TEXT,
		response_message TEXT,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX record_responses_record ON record_responses (record_id);
	CREATE INDEX record_responses_code ON record_responses (response_code);
	CREATE TABLE alerts (
		id {{pk}},
		record_id BIGINT NOT NULL REFERENCES integration_history_records(id),
		document_type TEXT,
		document_id BIGINT,
		external_id TEXT,
		contact_alert_type TEXT,
		integration_code TEXT,
		recipients TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE exported_documents (
		document_type TEXT NOT NULL,
		document_id BIGINT NOT NULL,
		exported INTEGER NOT NULL,
		last_exported_at BIGINT NOT NULL,
		PRIMARY KEY (document_type, document_id)
	);
	CREATE TABLE oauth_tokens (
		token_hash TEXT PRIMARY KEY,
		client_id TEXT NOT NULL,
		scope TEXT NOT NULL,
		expires_at BIGINT NOT NULL
	);`,
	// 2: issue order of tokens (Unix nanoseconds), so the per-client cap
	// revokes the oldest even among tokens minted within one second.
	`ALTER TABLE oauth_tokens ADD COLUMN issued_at BIGINT NOT NULL DEFAULT 0;
	CREATE INDEX oauth_tokens_client ON oauth_tokens (client_id, issued_at);`,
}

// migrate brings the schema to the newest version. On PostgreSQL an
// advisory lock keeps two instances starting together from racing.
func (s *store) migrate(ctx context.Context) error {
	return s.txDirect(ctx, func(tx *sql.Tx) error {
		if err := s.d.lockMigrations(ctx, tx); err != nil {
			return fmt.Errorf("apiserver: migration lock: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
			return fmt.Errorf("apiserver: migrations table: %w", err)
		}
		var have int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return fmt.Errorf("apiserver: schema version: %w", err)
		}
		if have > len(migrations) {
			return fmt.Errorf("apiserver: database schema version %d is newer than this binary (%d)", have, len(migrations))
		}
		for v := have + 1; v <= len(migrations); v++ {
			if _, err := tx.ExecContext(ctx, s.d.ddl(migrations[v-1])); err != nil {
				return fmt.Errorf("apiserver: migration %d: %w", v, err)
			}
			if _, err := tx.ExecContext(ctx, s.d.q(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), v, time.Now().Unix()); err != nil {
				return fmt.Errorf("apiserver: migration %d: %w", v, err)
			}
		}
		return nil
	})
}
