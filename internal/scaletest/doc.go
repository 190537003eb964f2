// Package scaletest holds the scale-out test of issue 8: several
// ihr-worker processes sharing one PostgreSQL ledger, one SFTP drop and
// one ihr-api, one of them killed mid-file. It has no code of its own.
package scaletest
