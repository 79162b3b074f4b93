package jute

// ConnectRequest is the first client frame of a connection; it has no
// RequestHeader.
type ConnectRequest struct {
	ProtocolVersion int32
	// LastZxidSeen is the highest reply zxid the client has seen; a server
	// that is behind it refuses the connection without a reply
	// (ZooKeeperServer.processConnectRequest).
	LastZxidSeen Zxid
	// TimeOut is the session timeout the client asks for, in milliseconds.
	TimeOut   int32
	SessionID SessionID
	Passwd    []byte
	// ReadOnly is the optional trailing byte: the client accepts a read-only
	// server. Meaningful only when HasReadOnly is set.
	ReadOnly bool
	// HasReadOnly reports whether the trailing readOnly byte is present. It
	// was written outside the jute record before 3.9 (ClientCnxnSocket sends
	// it after ConnectRequest.serialize; the server probes for it with
	// readBool in processConnectRequest), and old clients omit it. Encode
	// writes the byte only when HasReadOnly is set, so a decoded request
	// re-encodes in the form it arrived in.
	HasReadOnly bool
}

func (r *ConnectRequest) Decode(d *Decoder) {
	r.ProtocolVersion = d.Int32()
	r.LastZxidSeen = Zxid(d.Int64())
	r.TimeOut = d.Int32()
	r.SessionID = SessionID(d.Int64())
	r.Passwd = d.Buffer()
	r.ReadOnly, r.HasReadOnly = false, false
	if d.Err() == nil && d.Remaining() > 0 {
		r.HasReadOnly = true
		r.ReadOnly = d.Bool()
	}
}

func (r *ConnectRequest) Encode(e *Encoder) {
	e.Int32(r.ProtocolVersion)
	e.Int64(int64(r.LastZxidSeen))
	e.Int32(r.TimeOut)
	e.Int64(int64(r.SessionID))
	e.Buffer(r.Passwd)
	if r.HasReadOnly {
		e.Bool(r.ReadOnly)
	}
}

// ConnectResponse is the first server frame of a connection; it has no
// ReplyHeader. TimeOut 0 means the session is expired or invalid.
type ConnectResponse struct {
	ProtocolVersion int32
	// TimeOut is the negotiated session timeout in milliseconds.
	TimeOut   int32
	SessionID SessionID
	Passwd    []byte
	// ReadOnly reports a read-only server; meaningful only with HasReadOnly.
	ReadOnly bool
	// HasReadOnly reports whether the trailing readOnly byte is present. The
	// server writes it only when the client's request carried one
	// (ZooKeeperServer.finishSessionInit skips it when processConnectRequest
	// marked the connection isOldClient).
	HasReadOnly bool
}

func (r *ConnectResponse) Decode(d *Decoder) {
	r.ProtocolVersion = d.Int32()
	r.TimeOut = d.Int32()
	r.SessionID = SessionID(d.Int64())
	r.Passwd = d.Buffer()
	r.ReadOnly, r.HasReadOnly = false, false
	if d.Err() == nil && d.Remaining() > 0 {
		r.HasReadOnly = true
		r.ReadOnly = d.Bool()
	}
}

func (r *ConnectResponse) Encode(e *Encoder) {
	e.Int32(r.ProtocolVersion)
	e.Int32(r.TimeOut)
	e.Int64(int64(r.SessionID))
	e.Buffer(r.Passwd)
	if r.HasReadOnly {
		e.Bool(r.ReadOnly)
	}
}
