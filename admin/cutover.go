package admin

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/zkproxy/zkproxy/cutover"
)

// RegisterCutover serves the cutover API on h:
//
//	GET  /cutover                 phase and move progress (public: no session ids)
//	GET  /cutover/check           the sync check report
//	POST /cutover/start           ?dry_run=true only checks; ?force=true skips the check
//	POST /cutover/abort
//	POST /cutover/rollback
//	POST /cutover/split           records the split (no rollback after); lowers the barrier
//	POST /cutover/split?prepare=true  raises the split barrier (?force=true: even with the
//	                              joint leader on the destination or digests not yet equal)
//	POST /cutover/barrier/release lowers the barrier (or a hold) without recording the split
//	POST /hold?member=host:port   holds the sessions on a member about to restart (all without
//	                              member: for the leader); each is released when it re-attached
//
// Refused transitions answer 409 with the reason.
func RegisterCutover(h *Handler, c *cutover.Controller) {
	h.HandlePublic("GET /cutover", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, c.Status())
	})
	h.Handle("GET /cutover/check", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, c.Check(r.Context()))
	})
	h.HandleMutating("POST /cutover/start", func(w http.ResponseWriter, r *http.Request) {
		if flag(r, "dry_run") {
			WriteJSON(w, http.StatusOK, map[string]any{"dry_run": true, "check": c.Check(r.Context())})
			return
		}
		rep, err := c.Start(r.Context(), flag(r, "force"))
		if err != nil {
			WriteJSON(w, conflictOr500(err), map[string]any{"error": err.Error(), "check": rep, "status": c.Status()})
			return
		}
		WriteJSON(w, http.StatusAccepted, map[string]any{"status": c.Status(), "check": rep})
	})
	h.HandleMutating("POST /cutover/abort", func(w http.ResponseWriter, _ *http.Request) {
		if err := c.Abort(); err != nil {
			WriteJSON(w, conflictOr500(err), map[string]any{"error": err.Error(), "status": c.Status()})
			return
		}
		WriteJSON(w, http.StatusOK, c.Status())
	})
	h.HandleMutating("POST /cutover/rollback", func(w http.ResponseWriter, r *http.Request) {
		if err := c.Rollback(r.Context()); err != nil {
			WriteJSON(w, conflictOr500(err), map[string]any{"error": err.Error(), "status": c.Status()})
			return
		}
		WriteJSON(w, http.StatusAccepted, c.Status())
	})
	h.HandleMutating("POST /cutover/split", func(w http.ResponseWriter, r *http.Request) {
		if flag(r, "prepare") {
			plan, err := c.PrepareSplit(r.Context(), flag(r, "force"))
			if err != nil {
				WriteJSON(w, conflictOr500(err), map[string]any{"error": err.Error(), "plan": plan, "status": c.Status()})
				return
			}
			WriteJSON(w, http.StatusOK, map[string]any{"plan": plan, "status": c.Status()})
			return
		}
		if err := c.RecordSplit(); err != nil {
			WriteJSON(w, conflictOr500(err), map[string]any{"error": err.Error(), "status": c.Status()})
			return
		}
		WriteJSON(w, http.StatusOK, c.Status())
	})
	h.HandleMutating("POST /hold", func(w http.ResponseWriter, r *http.Request) {
		members := holdMembers(r)
		st, err := c.Hold(r.Context(), members)
		if err != nil {
			WriteJSON(w, conflictOr500(err), map[string]any{"error": err.Error(), "barrier": st})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]any{"barrier": st, "message": "hold up: restart the member now"})
	})
	h.HandleMutating("POST /cutover/barrier/release", func(w http.ResponseWriter, _ *http.Request) {
		if !c.ReleaseBarrier("released by the operator") {
			WriteError(w, http.StatusConflict, "no split barrier is up")
			return
		}
		WriteJSON(w, http.StatusOK, c.Status())
	})
}

func flag(r *http.Request, name string) bool {
	b, _ := strconv.ParseBool(r.URL.Query().Get(name))
	return b
}

// conflictOr500: refused transitions and a failed sync check are the
// operator's to resolve (409); anything else is zkproxy's failure.
func conflictOr500(err error) int {
	var te *cutover.TransitionError
	switch {
	case errors.As(err, &te), errors.Is(err, cutover.ErrNotReady), errors.Is(err, cutover.ErrLeaderOnDestination),
		errors.Is(err, cutover.ErrPeersOnSource), errors.Is(err, cutover.ErrHoldUp), errors.Is(err, cutover.ErrMoveRunning):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// holdMembers is POST /hold's member list (?member=a,b; empty: every
// session is held).
func holdMembers(r *http.Request) []string {
	var members []string
	for _, m := range strings.Split(r.URL.Query().Get("member"), ",") {
		if m = strings.TrimSpace(m); m != "" {
			members = append(members, m)
		}
	}
	return members
}
