package cutover

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTransitions(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	type step struct {
		ev      Event
		want    Phase
		changed bool
		refused string // substring of the refusal, empty if allowed
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"happy path then split", []step{
			{EventStart, PhaseCuttingOver, true, ""},
			{EventStart, PhaseCuttingOver, false, ""}, // idempotent
			{EventMovesDone, PhaseDestination, true, ""},
			{EventStart, PhaseDestination, false, ""},
			{EventSplit, PhaseDestination, true, ""},
			{EventSplit, PhaseDestination, false, ""},
			{EventRollback, PhaseDestination, false, "source is gone for good"},
		}},
		{"abort, resume, rollback", []step{
			{EventAbort, PhaseSource, false, "no move is running"},
			{EventStart, PhaseCuttingOver, true, ""},
			{EventAbort, PhaseAborted, true, ""},
			{EventStart, PhaseCuttingOver, true, ""},
			{EventRollback, PhaseRollingBack, true, ""},
			{EventStart, PhaseRollingBack, false, "rollback is running"},
			{EventMovesDone, PhaseSource, true, ""},
			{EventRollback, PhaseSource, false, "already on the source"},
		}},
		{"split needs every session moved", []step{
			{EventSplit, PhaseSource, false, "finish the cutover first"},
			{EventStart, PhaseCuttingOver, true, ""},
			{EventSplit, PhaseCuttingOver, false, "finish the cutover first"},
			{EventMovesDone, PhaseDestination, true, ""},
			{EventRollback, PhaseRollingBack, true, ""},
			{EventAbort, PhaseAborted, true, ""},
			{EventMovesDone, PhaseAborted, false, "no move is running"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := State{Phase: PhaseSource}
			for i, st := range tc.steps {
				n, changed, err := Next(s, st.ev, now)
				if st.refused != "" {
					var te *TransitionError
					if !errors.As(err, &te) || !strings.Contains(err.Error(), st.refused) {
						t.Fatalf("step %d %s: err = %v, want refusal with %q", i, st.ev, err, st.refused)
					}
				} else if err != nil {
					t.Fatalf("step %d %s: %v", i, st.ev, err)
				}
				if n.Phase != st.want || changed != st.changed {
					t.Fatalf("step %d %s: phase %s changed %v, want %s %v", i, st.ev, n.Phase, changed, st.want, st.changed)
				}
				s = n
			}
		})
	}
}

func TestTargets(t *testing.T) {
	for p, want := range map[Phase]Ensemble{
		PhaseSource: Source, PhaseCuttingOver: Destination, PhaseDestination: Destination,
		PhaseAborted: Destination, PhaseRollingBack: Source,
	} {
		if p.Target() != want {
			t.Errorf("%s routes to %s, want %s", p, p.Target(), want)
		}
		back, err := ParsePhase(p.String())
		if err != nil || back != p {
			t.Errorf("ParsePhase(%q) = %v, %v", p, back, err)
		}
	}
}

func TestRestored(t *testing.T) {
	now := time.Now()
	for from, want := range map[Phase]Phase{
		PhaseSource: PhaseSource, PhaseCuttingOver: PhaseDestination, PhaseAborted: PhaseDestination,
		PhaseDestination: PhaseDestination, PhaseRollingBack: PhaseSource,
	} {
		got, changed := Restored(State{Phase: from}, now)
		if got.Phase != want || changed != (from != want) {
			t.Errorf("restored %s → %s (changed %v), want %s", from, got.Phase, changed, want)
		}
	}
}

func TestStoreRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	s := Store{Dir: dir}
	st, err := s.Load()
	if err != nil || st.Phase != PhaseSource {
		t.Fatalf("empty dir: %+v %v", st, err)
	}
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	want := State{Phase: PhaseDestination, Split: true, StartedAt: now, FinishedAt: now.Add(time.Minute), SplitAt: now.Add(2 * time.Minute), UpdatedAt: now}
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil || !got.StartedAt.Equal(want.StartedAt) || got.Phase != want.Phase || !got.Split {
		t.Fatalf("loaded %+v %v, want %+v", got, err, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, stateFile))
	if !strings.Contains(string(b), `"phase": "destination"`) {
		t.Fatalf("state file is not readable JSON with phase names:\n%s", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"phase": "destinat`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt file: err = %v", err)
	}
}
