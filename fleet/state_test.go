package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zkproxy/zkproxy/cutover"
)

// TestStateLocal: the phase a starting replica adopts from the fleet state
// (fencing): once the cutover began it routes to the destination, whatever
// its data-dir said.
func TestStateLocal(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		fleet     State
		want      cutover.Phase
		wantSplit bool
	}{
		{State{Phase: cutover.PhaseSource}, cutover.PhaseSource, false},
		{State{Phase: cutover.PhaseCuttingOver}, cutover.PhaseDestination, false},
		{State{Phase: cutover.PhaseAborted}, cutover.PhaseDestination, false},
		{State{Phase: cutover.PhaseDestination}, cutover.PhaseDestination, false},
		{State{Phase: cutover.PhaseRollingBack}, cutover.PhaseSource, false},
		{State{Phase: cutover.PhaseDestination, Split: true}, cutover.PhaseDestination, true},
	} {
		got := tc.fleet.Local(now)
		if got.Phase != tc.want || got.Split != tc.wantSplit || got.Phase.Target() != tc.fleet.Phase.Target() && !tc.fleet.Split {
			t.Errorf("fleet %s split %t: local %s split %t, want %s", tc.fleet.Phase, tc.fleet.Split, got.Phase, got.Split, tc.want)
		}
		if tc.fleet.Began() != (got.Phase.Target() == cutover.Destination) {
			t.Errorf("fleet %s: Began %t but local routes to %s", tc.fleet.Phase, tc.fleet.Began(), got.Phase.Target())
		}
	}
}

// TestStateNext: every change bumps the epoch once, records its author and
// follows the cutover phase machine's rules.
func TestStateNext(t *testing.T) {
	now := time.Now()
	s := State{Phase: cutover.PhaseSource, Epoch: 4}
	n, changed, err := s.next(cutover.EventStart, "r1", now)
	if err != nil || !changed || n.Epoch != 5 || n.Phase != cutover.PhaseCuttingOver || n.Action != ActionStart || n.ChangedBy != "r1" || n.StartedEpoch != 5 {
		t.Fatalf("start: %+v %t %v", n, changed, err)
	}
	if _, changed, err := n.next(cutover.EventStart, "r2", now); changed || err != nil {
		t.Fatalf("second start: changed %t, %v", changed, err)
	}
	d, _, _ := n.next(cutover.EventMovesDone, "r2", now)
	sp, _, err := d.next(cutover.EventSplit, "r3", now)
	if err != nil || !sp.Split || sp.Epoch != 7 || sp.StartedEpoch != 5 {
		t.Fatalf("split: %+v %v", sp, err)
	}
	var te *cutover.TransitionError
	if _, _, err := sp.next(cutover.EventRollback, "r1", now); !errors.As(err, &te) {
		t.Fatalf("rollback after the split: %v", err)
	}
}

func TestDecodeState(t *testing.T) {
	st := State{Phase: cutover.PhaseAborted, Epoch: 9, Destination: []string{"a:1"}}
	b, err := encodeState(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeState(b)
	if err != nil || got.Phase != cutover.PhaseAborted || got.Epoch != 9 || got.Format != FormatVersion {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for in, want := range map[string]string{
		"":                                "not JSON",
		"[]":                              "not JSON",
		`{"phase":"source"}`:              "no format version",
		`{"format":2,"phase":"source"}`:   "format version 2",
		`{"format":1,"phase":"sideways"}`: "unknown phase",
		`{"format":1,"phase":"source","epoch":-1}`: "negative epoch",
	} {
		if _, err := decodeState([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}
