// Package scale holds the scale-out test: several
// ihr-worker processes sharing one PostgreSQL ledger, one SFTP drop and
// one ihr-api, the larger files split into ranges the workers share, one
// worker killed mid-range (or mid-file). It has no code of its own.
package scale
