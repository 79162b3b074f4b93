package jute

import "strconv"

// ErrCode is the err field of a ReplyHeader or a multi result
// (KeeperException.Code).
type ErrCode int32

// Error codes, complete through ZooKeeper 3.9 (KeeperException.Code). The
// ones marked client-side are produced by clients, never sent by a server.
const (
	ErrOK                           ErrCode = 0
	ErrSystemError                  ErrCode = -1
	ErrRuntimeInconsistency         ErrCode = -2
	ErrDataInconsistency            ErrCode = -3
	ErrConnectionLoss               ErrCode = -4 // client-side
	ErrMarshallingError             ErrCode = -5
	ErrUnimplemented                ErrCode = -6
	ErrOperationTimeout             ErrCode = -7 // client-side
	ErrBadArguments                 ErrCode = -8
	ErrUnknownSession               ErrCode = -12
	ErrNewConfigNoQuorum            ErrCode = -13
	ErrReconfigInProgress           ErrCode = -14
	ErrAPIError                     ErrCode = -100
	ErrNoNode                       ErrCode = -101
	ErrNoAuth                       ErrCode = -102
	ErrBadVersion                   ErrCode = -103
	ErrNoChildrenForEphemerals      ErrCode = -108
	ErrNodeExists                   ErrCode = -110
	ErrNotEmpty                     ErrCode = -111
	ErrSessionExpired               ErrCode = -112
	ErrInvalidCallback              ErrCode = -113
	ErrInvalidACL                   ErrCode = -114
	ErrAuthFailed                   ErrCode = -115
	ErrSessionMoved                 ErrCode = -118
	ErrNotReadOnly                  ErrCode = -119
	ErrEphemeralOnLocalSession      ErrCode = -120
	ErrNoWatcher                    ErrCode = -121
	ErrRequestTimeout               ErrCode = -122 // client-side
	ErrReconfigDisabled             ErrCode = -123
	ErrSessionClosedRequireSASLAuth ErrCode = -124
	ErrQuotaExceeded                ErrCode = -125
	ErrThrottledOp                  ErrCode = -127
)

var errCodeNames = map[ErrCode]string{
	ErrOK:                           "OK",
	ErrSystemError:                  "SYSTEMERROR",
	ErrRuntimeInconsistency:         "RUNTIMEINCONSISTENCY",
	ErrDataInconsistency:            "DATAINCONSISTENCY",
	ErrConnectionLoss:               "CONNECTIONLOSS",
	ErrMarshallingError:             "MARSHALLINGERROR",
	ErrUnimplemented:                "UNIMPLEMENTED",
	ErrOperationTimeout:             "OPERATIONTIMEOUT",
	ErrBadArguments:                 "BADARGUMENTS",
	ErrUnknownSession:               "UNKNOWNSESSION",
	ErrNewConfigNoQuorum:            "NEWCONFIGNOQUORUM",
	ErrReconfigInProgress:           "RECONFIGINPROGRESS",
	ErrAPIError:                     "APIERROR",
	ErrNoNode:                       "NONODE",
	ErrNoAuth:                       "NOAUTH",
	ErrBadVersion:                   "BADVERSION",
	ErrNoChildrenForEphemerals:      "NOCHILDRENFOREPHEMERALS",
	ErrNodeExists:                   "NODEEXISTS",
	ErrNotEmpty:                     "NOTEMPTY",
	ErrSessionExpired:               "SESSIONEXPIRED",
	ErrInvalidCallback:              "INVALIDCALLBACK",
	ErrInvalidACL:                   "INVALIDACL",
	ErrAuthFailed:                   "AUTHFAILED",
	ErrSessionMoved:                 "SESSIONMOVED",
	ErrNotReadOnly:                  "NOTREADONLY",
	ErrEphemeralOnLocalSession:      "EPHEMERALONLOCALSESSION",
	ErrNoWatcher:                    "NOWATCHER",
	ErrRequestTimeout:               "REQUESTTIMEOUT",
	ErrReconfigDisabled:             "RECONFIGDISABLED",
	ErrSessionClosedRequireSASLAuth: "SESSIONCLOSEDREQUIRESASLAUTH",
	ErrQuotaExceeded:                "QUOTAEXCEEDED",
	ErrThrottledOp:                  "THROTTLEDOP",
}

// String returns the KeeperException.Code name, e.g. "NONODE", or "err(N)"
// for an unknown code.
func (c ErrCode) String() string {
	if s, ok := errCodeNames[c]; ok {
		return s
	}
	return "err(" + strconv.FormatInt(int64(c), 10) + ")"
}

// Known reports whether c is a code defined by ZooKeeper 3.9.
func (c ErrCode) Known() bool {
	_, ok := errCodeNames[c]
	return ok
}
