// Package proxy is zkproxy's ZooKeeper-protocol proxy. It accepts ZooKeeper
// clients, forwards each session to a member of the target ensemble byte
// for byte, and keeps enough per-session state to re-attach the session to
// another member without the client noticing: after a member fails
// (failover inside the ensemble) or when cutover moves it to another
// ensemble. docs/protocol.md §9 is the design this follows.
//
// # Where things are
//
// server.go accepts connections and owns the session tables; session.go
// the Session, its state and its close; handshake.go the first frames
// (ConnectRequest or four-letter word); client_pump.go client → member
// (forward, hold, ping answers, writes to the client); upstream_pump.go
// member → client (reply accounting, the proxy's pings); reattach.go the
// failover (re-attach, auth and watch replay, resume); move.go what cutover
// asks of a session (Move, Hold and Release, Disconnect); closereason.go
// why a session closed, as counted. upstream.go dials members, watches.go
// and outstanding.go keep the tracked state, framereader.go, framewriter.go
// and parker*.go the I/O.
//
// # Per connection
//
// One goroutine per client connection runs the handshake and ends; a
// fresh one then reads client frames (readClient), so an idle session does
// not keep the handshake's grown stack; one goroutine per upstream
// connection (runUpstream) reads member frames; a timer per upstream sends
// the proxy's own keep-alive pings. Frames are forwarded as received; only
// the headers are decoded on the hot path, plus the bodies that change the
// tracked state (watch-setting reads, addWatch, removeWatches, SetWatches,
// auth, notifications). Lock order: Session.sendMu (orders writes to the
// upstream with the queue entries that describe them) before Session.mu
// (state); Session.cwmu serialises whole frames to the client.
//
// Tracked per session (docs/protocol.md §9.1): id, password, requested and
// negotiated timeouts, the readOnly byte, lastZxidSeen (max zxid over
// ordinary replies), the FIFO of forwarded requests (each reply must match
// its head), the FIFO of ping owners (client or proxy), auth packets whose
// replies succeeded, and the five watch sets (watches.go).
//
// # Failover
//
// When the upstream connection ends and nothing is in flight, the session
// is re-attached on another member of its ensemble: ConnectRequest with the
// same id, password, lastZxidSeen, requested timeout and readOnly byte,
// then the auth packets (xid -4), then SetWatches/SetWatches2 batches (xid
// -8); the replies are swallowed, catch-up notifications forwarded. Client
// requests are held meanwhile and client pings answered by the proxy. With
// requests in flight, or after the member meant to close (closeSession,
// AUTHFAILED, UNIMPLEMENTED ...), or for SASL sessions, the client
// connection is closed instead: the client reconnects through the proxy
// with its session. The budget is the member's session timeout since the
// last frame from it.
//
// # What cutover uses
//
// Cutover and the admin API drive the proxy through:
//
//	func (*Server) SetTarget(members []string)  // where new connections go
//	func (*Server) Target() []string
//	func (*Server) Sessions() []*Session        // established sessions, oldest first
//	func (*Session) ID() jute.SessionID
//	func (*Session) State() SessionState
//	func (*Session) Info() SessionInfo          // member, ensemble, watches, lastZxid, SASL, ...
//	func (*Session) Move(ctx context.Context, target []string) error
//	func (*Session) Hold(ctx context.Context) error  // split barrier: drain, then hold
//	func (*Session) Release()
//	func (*Session) Disconnect(ctx context.Context, reason string)  // the visible fallback, after a drain
//
// Move drains (holds new requests, waits for in-flight replies until ctx
// ends), closes the old upstream, opens the session on a member of target,
// replays auth and watches and releases the held requests; failovers then
// stay inside target. Its errors are *MoveError, whose MoveReason() is a
// bounded label and whose Disconnected field says whether the client
// connection had to be closed (after the old upstream is closed there is no
// way back). A drain that times out leaves the session where it was.
//
// # Four-letter words
//
// ruok is answered by the proxy; every other word is relayed to a member of
// the target ensemble (see answerFourLetterWord for why).
package proxy
