package admin

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/zkproxy/zkproxy/cutover"
	"github.com/zkproxy/zkproxy/fleet"
	"github.com/zkproxy/zkproxy/proxy"
)

// FleetStatus is GET /cutover in a fleet: this replica's controller and the
// whole fleet (every replica's progress and the totals).
type FleetStatus struct {
	cutover.Status
	Fleet fleet.View `json:"fleet"`
}

// RegisterFleetCutover serves the cutover API of RegisterCutover for a
// replica of a fleet: every mutating route changes the fleet state znode
// (conditionally: a concurrent change by another replica answers 409 with
// the reason) and every replica applies it. ?if_epoch=N makes a change
// conditional on the epoch the operator saw (GET /cutover: fleet.state.epoch).
// Use it instead of RegisterCutover, not with it.
func RegisterFleetCutover(h *Handler, c *cutover.Controller, f *fleet.Fleet) {
	status := func(r *http.Request) FleetStatus {
		return FleetStatus{Status: c.Status(), Fleet: f.Status(r.Context())}
	}
	fail := func(w http.ResponseWriter, r *http.Request, err error, extra map[string]any) {
		body := map[string]any{"error": err.Error(), "status": status(r)}
		for k, v := range extra {
			body[k] = v
		}
		WriteJSON(w, fleetConflictOr500(err), body)
	}
	h.HandlePublic("GET /cutover", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, status(r))
	})
	h.Handle("GET /cutover/check", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, c.Check(r.Context()))
	})
	h.HandleMutating("POST /cutover/start", func(w http.ResponseWriter, r *http.Request) {
		if flag(r, "dry_run") {
			WriteJSON(w, http.StatusOK, map[string]any{"dry_run": true, "check": c.Check(r.Context())})
			return
		}
		rep, err := f.Start(r.Context(), flag(r, "force"), ifEpoch(r))
		if err != nil {
			fail(w, r, err, map[string]any{"check": rep})
			return
		}
		WriteJSON(w, http.StatusAccepted, map[string]any{"status": status(r), "check": rep})
	})
	h.HandleMutating("POST /cutover/abort", func(w http.ResponseWriter, r *http.Request) {
		if err := f.Abort(r.Context(), ifEpoch(r)); err != nil {
			fail(w, r, err, nil)
			return
		}
		WriteJSON(w, http.StatusOK, status(r))
	})
	h.HandleMutating("POST /cutover/rollback", func(w http.ResponseWriter, r *http.Request) {
		if err := f.Rollback(r.Context(), ifEpoch(r)); err != nil {
			fail(w, r, err, nil)
			return
		}
		WriteJSON(w, http.StatusAccepted, status(r))
	})
	h.HandleMutating("POST /cutover/split", func(w http.ResponseWriter, r *http.Request) {
		if flag(r, "prepare") {
			plan, err := f.PrepareSplit(r.Context(), flag(r, "force"))
			if err != nil {
				fail(w, r, err, map[string]any{"plan": plan})
				return
			}
			WriteJSON(w, http.StatusOK, map[string]any{"plan": plan, "status": status(r)})
			return
		}
		if err := f.RecordSplit(r.Context(), ifEpoch(r)); err != nil {
			fail(w, r, err, nil)
			return
		}
		WriteJSON(w, http.StatusOK, status(r))
	})
	h.HandleMutating("POST /hold", func(w http.ResponseWriter, r *http.Request) {
		members := holdMembers(r)
		st, err := f.Hold(r.Context(), members)
		if err != nil {
			fail(w, r, err, map[string]any{"barrier": st})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"barrier": st, "message": "hold up on every replica: restart the member now"})
	})
	h.HandleMutating("POST /cutover/barrier/release", func(w http.ResponseWriter, r *http.Request) {
		if err := f.ReleaseBarrier(r.Context()); err != nil {
			fail(w, r, err, nil)
			return
		}
		WriteJSON(w, http.StatusOK, status(r))
	})
}

// RegisterFleetSessions is RegisterSessions for a replica of a fleet: the
// answer adds every replica's session counts and the fleet's totals (counts
// only: other replicas' session ids stay on their own admin APIs).
func RegisterFleetSessions(h *Handler, srv *proxy.Server, destination []string, f *fleet.Fleet) {
	h.Handle("GET /sessions", func(w http.ResponseWriter, r *http.Request) {
		rows := Rows(srv, destination)
		if rows == nil {
			rows = []SessionRow{}
		}
		v := f.Status(r.Context())
		WriteJSON(w, http.StatusOK, map[string]any{"sessions": rows, "count": len(rows),
			"fleet": map[string]any{"replicas": v.Live, "vanished": v.Vanished, "totals": v.Totals}})
	})
}

func ifEpoch(r *http.Request) int64 {
	n, _ := strconv.ParseInt(r.URL.Query().Get("if_epoch"), 10, 64)
	return n
}

// fleetConflictOr500: a change another replica made first and a fleet not
// ready for the split are the operator's to resolve (409), like refused
// transitions.
func fleetConflictOr500(err error) int {
	if errors.Is(err, fleet.ErrConflict) || errors.Is(err, fleet.ErrReplicasNotReady) {
		return http.StatusConflict
	}
	return conflictOr500(err)
}
