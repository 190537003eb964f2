package workercli

import (
	"context"
	"fmt"
	"time"

	"github.com/ihr-tools/ihr/state"
)

// statusAlert is one open event in status.
type statusAlert struct {
	Kind   string    `json:"kind"` // delivery_missed, source_down, api_down, file_failed
	File   string    `json:"file,omitempty"`
	Since  time.Time `json:"since"`
	Detail string    `json:"detail"`
}

// addAlerts fills each source's open events from the ledger (none when
// there is no ledger, or serve never ran on it).
func addAlerts(ctx context.Context, led state.Ledger, out []*statusSource) error {
	for _, ss := range out {
		ss.Alerts = []statusAlert{}
	}
	if led == nil {
		return nil
	}
	ops, err := state.OpsOf(ctx, led)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	for _, ss := range out {
		evs, err := ops.Events(ctx, ss.Name, true, 100)
		if err != nil {
			return fmt.Errorf("state: %w", err)
		}
		for _, e := range evs {
			ss.Alerts = append(ss.Alerts, statusAlert{Kind: e.Kind, File: e.File, Since: e.OpenedAt, Detail: e.Detail})
		}
	}
	return nil
}
