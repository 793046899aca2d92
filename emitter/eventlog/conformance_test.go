package eventlog_test

import (
	"path/filepath"
	"testing"

	"github.com/callfsm/callfsm/emitter/eventlog"
	"github.com/callfsm/callfsm/emitter/eventlog/eventlogtest"
)

func TestFileConformance(t *testing.T) {
	for _, policy := range []eventlog.SyncPolicy{eventlog.SyncAlways, eventlog.SyncInterval, eventlog.SyncNever} {
		t.Run(policy.String(), func(t *testing.T) {
			eventlogtest.Run(t, func(t *testing.T) eventlog.Log {
				l, err := eventlog.OpenFile(filepath.Join(t.TempDir(), "events.jsonl"), eventlog.FileConfig{Sync: policy})
				if err != nil {
					t.Fatal(err)
				}
				return l
			})
		})
	}
}

func TestMemoryConformance(t *testing.T) {
	eventlogtest.Run(t, func(*testing.T) eventlog.Log { return eventlog.NewMemory() })
}
