// Package reliability is the failure-mode suite: the worker's
// pipeline against a fault-injecting proxy in front of ihr-api (resets,
// timeouts, 429 with and without Retry-After, 5xx, an outage), store
// faults on real servers (SFTP and FTP connections cut mid-download and
// mid-report-upload, the S3 server restarted mid-run, a full disk), kill -9
// of the built ihr-worker at random instants, and security checks
// (configured secrets never appear in any output, log, report or ledger;
// path traversal names in a listing; an unknown SFTP host key is refused).
//
// Every test ends by counting the server's records by integration_filename:
// exactly one per data row, nothing lost, and every file in exactly one
// place.
//
// The suite runs in `make test`, sized to stay well under three minutes.
// The API outage lasts IHR_OUTAGE (a Go duration; default 3s, the issue's
// "30 s outage" scaled down; IHR_OUTAGE=30s reproduces it). The package has
// no code of its own.
package reliability
