package importer_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/importer"
	"github.com/ihr-tools/ihr/state"
)

// listHook is a store whose List runs a hook once the real listing is
// done: the moment between a worker's listing and its claims.
type listHook struct {
	filestore.Store
	once  sync.Once
	after func()
}

func (s *listHook) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	infos, err := s.Store.List(ctx, dir)
	s.once.Do(s.after)
	return infos, err
}

// TestFileArchivedByAnotherWorkerAfterListing is the scale-out race: worker
// A lists the inbox, worker B (same ledger) processes and archives the
// file, then A claims it. A must skip it quietly: not a source failure,
// not pending, no line in its summary.
func TestFileArchivedByAnotherWorkerAfterListing(t *testing.T) {
	e := newEnv(t)
	content, ids := csvRows("RACE", 1, 30)
	e.drop("race.csv", content)

	cfgB := e.cfg
	cfgB.Owner = "worker-b"
	b := importer.New(cfgB, e.api, e.ledger, nil, nil)
	var sumB importer.Summary
	var errB error
	srcA := e.src
	srcA.Store = &listHook{Store: e.store, after: func() {
		sumB, errB = b.RunSource(context.Background(), e.src)
	}}
	cfgA := e.cfg
	cfgA.Owner = "worker-a"
	a := importer.New(cfgA, e.api, e.ledger, nil, e.obs)
	sumA, errA := a.RunSource(context.Background(), srcA)

	if errB != nil || sumB.Archived != 1 {
		t.Fatalf("worker B: %+v, %v", sumB, errB)
	}
	if errA != nil || len(sumA.Files) != 0 || !sumA.Clean() {
		t.Fatalf("worker A: want a clean, empty pass, got %+v, %v", sumA, errA)
	}
	if e.obs.started != 0 || e.obs.done != 0 {
		t.Fatalf("worker A reported the file to its observer: %+v", e.obs)
	}
	f, err := e.ledger.File(context.Background(), state.FileID{Source: "erp", Name: "race.csv"})
	if err != nil || f.Status != state.Done || f.Location != "archive/race.csv" || f.Run != 1 {
		t.Fatalf("ledger: %+v, %v", f, err)
	}
	e.exactlyOnce("race.csv", ids)
}

// TestClaimedElsewhereIsNotPending: a file another live worker holds is
// that worker's to finish and report, so this pass is still clean (exit
// code 0 in the CLI) and lists the file as elsewhere.
func TestClaimedElsewhereIsNotPending(t *testing.T) {
	e := newEnv(t)
	content, _ := csvRows("HELD", 1, 5)
	e.drop("held.csv", content)
	if _, err := e.ledger.Claim(context.Background(), state.FileID{Source: "erp", Name: "held.csv"}, "other-worker", time.Minute); err != nil {
		t.Fatal(err)
	}
	sum := e.run()
	if sum.Elsewhere != 1 || sum.Pending != 0 || !sum.Clean() || len(sum.Files) != 1 || sum.Files[0].Status != state.Claimed {
		t.Fatalf("summary: %+v", sum)
	}
	if !e.exists("inbox/held.csv") {
		t.Fatal("the held file was touched")
	}
}
