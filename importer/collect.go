package importer

import (
	"context"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// collector is the collect stage: it commits outcomes in batches (group
// commit), one ledger transaction per batch, when size outcomes wait or
// every interval, and once more when results is closed.
// Invariants: outcomes are committed in the order they arrive; after a
// failed commit nothing more is committed (the run is stopped by commit,
// and the rows left uncommitted are under the mark, looked up on resume).
type collector struct {
	size   int
	every  time.Duration
	commit func([]state.Outcome) error
	batch  []state.Outcome
	failed error
}

// run collects until results is closed and returns the first commit
// error.
func (c *collector) run(results <-chan state.Outcome) error {
	tick := time.NewTicker(c.every)
	defer tick.Stop()
	for {
		select {
		case o, ok := <-results:
			if !ok {
				c.flush()
				return c.failed
			}
			c.batch = append(c.batch, o)
			if len(c.batch) >= c.size {
				c.flush()
			}
		case <-tick.C:
			c.flush()
		}
	}
}

func (c *collector) flush() {
	if len(c.batch) > 0 && c.failed == nil {
		c.failed = c.commit(c.batch)
	}
	c.batch = c.batch[:0]
}

// commit records a batch of the run's outcomes, then lets their keys out
// of flight and counts them. A failure stops the run.
func (d *dispatchRun) commit(batch []state.Outcome) error {
	defer d.im.lap(StageCommit, d.im.clock())
	lctx, cancel := context.WithTimeout(d.base, ledgerTimeout)
	err := d.sp.record(lctx, batch)
	cancel()
	if err != nil {
		d.stop(err)
		return err
	}
	d.inflight.committed(batch)
	d.sp.gate.committed(batch)
	for _, o := range batch {
		d.im.obs.RowDone(d.src.Name, d.f.Name, o.Result)
	}
	d.done.Add(int64(len(batch)))
	d.progress()
	return nil
}
