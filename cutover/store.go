package cutover

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the name of the persisted state under the data directory.
const stateFile = "cutover-state.json"

// Store persists State under a directory so a restarted zkproxy never routes
// a client to the wrong ensemble.
type Store struct {
	Dir string
}

// Load reads the persisted state; a missing file is the initial state
// (phase source). A corrupt file is an error, never silently the initial
// state: after a split, guessing "source" would send clients to an ensemble
// that no longer has their data.
func (s Store) Load() (State, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{Phase: PhaseSource}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("cutover: reading state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("cutover: state file %s is corrupt (fix or remove it deliberately): %w",
			filepath.Join(s.Dir, stateFile), err)
	}
	return st, nil
}

// Save writes st durably: write a temporary file, fsync it, rename it over
// the old one, fsync the directory so the rename itself survives a crash.
func (s Store) Save(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("cutover: encoding state: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, stateFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("cutover: saving state: %w", err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op after the rename
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("cutover: saving state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("cutover: saving state: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cutover: saving state: %w", err)
	}
	if err := os.Rename(tmpName, filepath.Join(s.Dir, stateFile)); err != nil {
		return fmt.Errorf("cutover: saving state: %w", err)
	}
	dir, err := os.Open(s.Dir)
	if err != nil {
		return fmt.Errorf("cutover: saving state: opening dir for fsync: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("cutover: saving state: fsync dir: %w", err)
	}
	return nil
}

// Exists reports whether a state was ever saved here (Load answers the
// initial state for a missing file).
func (s Store) Exists() (bool, error) {
	_, err := os.Stat(filepath.Join(s.Dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cutover: reading state: %w", err)
	}
	return true, nil
}
