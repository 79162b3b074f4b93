package jute

// Id is an authentication identity: a scheme ("world", "digest", "ip",
// "sasl", "auth", ...) and an id within it.
type Id struct {
	Scheme string
	ID     string
	// NullID reports that the id was a null ustring (ID is then ""), and
	// makes Encode write one. kazoo writes every empty string as null, so
	// its CREATOR_ALL_ACL, ("auth", ""), arrives with a null id; the server
	// accepts it because the auth scheme's id is replaced by the
	// connection's identities (PrepRequestProcessor.fixupACL).
	NullID bool
}

func (r *Id) Decode(d *Decoder) {
	r.Scheme = d.UString()
	id := d.NullableUString()
	r.ID, r.NullID = "", id == nil
	if id != nil {
		r.ID = *id
	}
}

func (r *Id) Encode(e *Encoder) {
	e.UString(r.Scheme)
	if r.NullID {
		e.Int32(-1)
		return
	}
	e.UString(r.ID)
}

// ACL grants Perms to an Id.
type ACL struct {
	Perms Perms
	ID    Id
}

// aclMinSize is the smallest encoded ACL: perms plus two empty strings.
const aclMinSize = 12

func (r *ACL) Decode(d *Decoder) {
	r.Perms = Perms(d.Int32())
	d.Nested(&r.ID)
}

func (r *ACL) Encode(e *Encoder) {
	e.Int32(int32(r.Perms))
	r.ID.Encode(e)
}

// decodeACLs reads a vector<ACL>, nil for a null vector.
func decodeACLs(d *Decoder) []ACL {
	n := d.VectorLen(aclMinSize)
	if n < 0 || d.Err() != nil {
		return nil
	}
	acls := make([]ACL, n)
	for i := range acls {
		d.Nested(&acls[i])
	}
	return acls
}

func encodeACLs(e *Encoder, acls []ACL) {
	e.VectorLen(len(acls), acls == nil)
	for i := range acls {
		acls[i].Encode(e)
	}
}

// GetACLRequest is the body of getACL.
type GetACLRequest struct {
	Path string
}

func (r *GetACLRequest) Decode(d *Decoder) { r.Path = d.UString() }
func (r *GetACLRequest) Encode(e *Encoder) { e.UString(r.Path) }

// GetACLResponse answers getACL.
type GetACLResponse struct {
	ACL  []ACL
	Stat Stat
}

func (r *GetACLResponse) Decode(d *Decoder) {
	r.ACL = decodeACLs(d)
	d.Nested(&r.Stat)
}

func (r *GetACLResponse) Encode(e *Encoder) {
	encodeACLs(e, r.ACL)
	r.Stat.Encode(e)
}

// SetACLRequest is the body of setACL. Version -1 matches any ACL version.
type SetACLRequest struct {
	Path    string
	ACL     []ACL
	Version int32
}

func (r *SetACLRequest) Decode(d *Decoder) {
	r.Path = d.UString()
	r.ACL = decodeACLs(d)
	r.Version = d.Int32()
}

func (r *SetACLRequest) Encode(e *Encoder) {
	e.UString(r.Path)
	encodeACLs(e, r.ACL)
	e.Int32(r.Version)
}

// SetACLResponse answers setACL.
type SetACLResponse struct {
	Stat Stat
}

func (r *SetACLResponse) Decode(d *Decoder) { d.Nested(&r.Stat) }
func (r *SetACLResponse) Encode(e *Encoder) { r.Stat.Encode(e) }

// AuthPacket is the body of an auth request (addAuthInfo, xid -4). Type is
// always 0. The server answers inline with a header-only reply, err 0 or
// AUTHFAILED; AUTHFAILED is followed by the connection closing
// (ZooKeeperServer.processPacket).
type AuthPacket struct {
	Type   int32
	Scheme string
	Auth   []byte
}

func (r *AuthPacket) Decode(d *Decoder) {
	r.Type = d.Int32()
	r.Scheme = d.UString()
	r.Auth = d.Buffer()
}

func (r *AuthPacket) Encode(e *Encoder) {
	e.Int32(r.Type)
	e.UString(r.Scheme)
	e.Buffer(r.Auth)
}

// GetSASLRequest is the body of a sasl request: a SASL token.
type GetSASLRequest struct {
	Token []byte
}

func (r *GetSASLRequest) Decode(d *Decoder) { r.Token = d.Buffer() }
func (r *GetSASLRequest) Encode(e *Encoder) { e.Buffer(r.Token) }

// SetSASLResponse answers sasl: the server's SASL token.
type SetSASLResponse struct {
	Token []byte
}

func (r *SetSASLResponse) Decode(d *Decoder) { r.Token = d.Buffer() }
func (r *SetSASLResponse) Encode(e *Encoder) { e.Buffer(r.Token) }

// ClientInfo is one identity of the connection, as whoAmI reports it.
type ClientInfo struct {
	AuthScheme string
	User       string
}

// clientInfoMinSize is the smallest encoded ClientInfo: two empty strings.
const clientInfoMinSize = 8

func (r *ClientInfo) Decode(d *Decoder) {
	r.AuthScheme = d.UString()
	r.User = d.UString()
}

func (r *ClientInfo) Encode(e *Encoder) {
	e.UString(r.AuthScheme)
	e.UString(r.User)
}

// WhoAmIResponse answers whoAmI (3.7+; the request has no body).
type WhoAmIResponse struct {
	ClientInfo []ClientInfo
}

func (r *WhoAmIResponse) Decode(d *Decoder) {
	n := d.VectorLen(clientInfoMinSize)
	if n < 0 || d.Err() != nil {
		r.ClientInfo = nil
		return
	}
	r.ClientInfo = make([]ClientInfo, n)
	for i := range r.ClientInfo {
		d.Nested(&r.ClientInfo[i])
	}
}

func (r *WhoAmIResponse) Encode(e *Encoder) {
	e.VectorLen(len(r.ClientInfo), r.ClientInfo == nil)
	for i := range r.ClientInfo {
		r.ClientInfo[i].Encode(e)
	}
}
