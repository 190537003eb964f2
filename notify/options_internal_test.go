package notify

import (
	"testing"
	"time"
)

// TestRetriesEndBeforeClaimTurnsStale: however long GiveUp is set, a
// sender's last attempt ends before its claim may be taken over.
func TestRetriesEndBeforeClaimTurnsStale(t *testing.T) {
	for _, o := range []Options{{}, {GiveUp: time.Hour}, {GiveUp: time.Hour, Stale: 5 * time.Minute, Timeout: 30 * time.Second}} {
		n := New(nil, nil, nil, o)
		if n.o.GiveUp+n.o.Timeout >= n.o.Stale {
			t.Errorf("%+v: give up %v + attempt %v reaches stale %v", o, n.o.GiveUp, n.o.Timeout, n.o.Stale)
		}
	}
}
