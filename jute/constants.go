package jute

import "strconv"

// EventType is the type field of a WatcherEvent (Watcher.Event.EventType).
type EventType int32

// Event types. Only NodeCreated through NodeChildrenChanged appear on the
// wire; the others are synthesised by clients.
const (
	EventNone                   EventType = -1
	EventNodeCreated            EventType = 1
	EventNodeDeleted            EventType = 2
	EventNodeDataChanged        EventType = 3
	EventNodeChildrenChanged    EventType = 4
	EventDataWatchRemoved       EventType = 5
	EventChildWatchRemoved      EventType = 6
	EventPersistentWatchRemoved EventType = 7
)

func (t EventType) String() string {
	switch t {
	case EventNone:
		return "None"
	case EventNodeCreated:
		return "NodeCreated"
	case EventNodeDeleted:
		return "NodeDeleted"
	case EventNodeDataChanged:
		return "NodeDataChanged"
	case EventNodeChildrenChanged:
		return "NodeChildrenChanged"
	case EventDataWatchRemoved:
		return "DataWatchRemoved"
	case EventChildWatchRemoved:
		return "ChildWatchRemoved"
	case EventPersistentWatchRemoved:
		return "PersistentWatchRemoved"
	}
	return "EventType(" + strconv.FormatInt(int64(t), 10) + ")"
}

// KeeperState is the state field of a WatcherEvent
// (Watcher.Event.KeeperState). Server notifications always carry
// StateSyncConnected; the others are synthesised by clients.
type KeeperState int32

// Keeper states.
const (
	StateUnknown           KeeperState = -1
	StateDisconnected      KeeperState = 0
	StateNoSyncConnected   KeeperState = 1
	StateSyncConnected     KeeperState = 3
	StateAuthFailed        KeeperState = 4
	StateConnectedReadOnly KeeperState = 5
	StateSaslAuthenticated KeeperState = 6
	StateClosed            KeeperState = 7
	StateExpired           KeeperState = -112
)

func (s KeeperState) String() string {
	switch s {
	case StateUnknown:
		return "Unknown"
	case StateDisconnected:
		return "Disconnected"
	case StateNoSyncConnected:
		return "NoSyncConnected"
	case StateSyncConnected:
		return "SyncConnected"
	case StateAuthFailed:
		return "AuthFailed"
	case StateConnectedReadOnly:
		return "ConnectedReadOnly"
	case StateSaslAuthenticated:
		return "SaslAuthenticated"
	case StateClosed:
		return "Closed"
	case StateExpired:
		return "Expired"
	}
	return "KeeperState(" + strconv.FormatInt(int64(s), 10) + ")"
}

// CreateMode is the flags field of a create request (CreateMode.toFlag).
type CreateMode int32

// Create modes.
const (
	CreatePersistent                  CreateMode = 0
	CreateEphemeral                   CreateMode = 1
	CreatePersistentSequential        CreateMode = 2
	CreateEphemeralSequential         CreateMode = 3
	CreateContainer                   CreateMode = 4
	CreatePersistentWithTTL           CreateMode = 5
	CreatePersistentSequentialWithTTL CreateMode = 6
)

func (m CreateMode) String() string {
	switch m {
	case CreatePersistent:
		return "PERSISTENT"
	case CreateEphemeral:
		return "EPHEMERAL"
	case CreatePersistentSequential:
		return "PERSISTENT_SEQUENTIAL"
	case CreateEphemeralSequential:
		return "EPHEMERAL_SEQUENTIAL"
	case CreateContainer:
		return "CONTAINER"
	case CreatePersistentWithTTL:
		return "PERSISTENT_WITH_TTL"
	case CreatePersistentSequentialWithTTL:
		return "PERSISTENT_SEQUENTIAL_WITH_TTL"
	}
	return "CreateMode(" + strconv.FormatInt(int64(m), 10) + ")"
}

// Ephemeral reports whether nodes created with m belong to the session.
func (m CreateMode) Ephemeral() bool {
	return m == CreateEphemeral || m == CreateEphemeralSequential
}

// WatcherType is the type field of checkWatches and removeWatches requests
// (Watcher.WatcherType).
type WatcherType int32

// Watcher types. Persistent and PersistentRecursive are accepted by servers
// from 3.9 on (ZOOKEEPER-4472); older servers remove persistent watches with
// Any.
const (
	WatcherChildren            WatcherType = 1
	WatcherData                WatcherType = 2
	WatcherAny                 WatcherType = 3
	WatcherPersistent          WatcherType = 4
	WatcherPersistentRecursive WatcherType = 5
)

func (w WatcherType) String() string {
	switch w {
	case WatcherChildren:
		return "Children"
	case WatcherData:
		return "Data"
	case WatcherAny:
		return "Any"
	case WatcherPersistent:
		return "Persistent"
	case WatcherPersistentRecursive:
		return "PersistentRecursive"
	}
	return "WatcherType(" + strconv.FormatInt(int64(w), 10) + ")"
}

// AddWatchMode is the mode field of an addWatch request
// (ZooDefs.AddWatchModes).
type AddWatchMode int32

// AddWatch modes.
const (
	AddWatchPersistent          AddWatchMode = 0
	AddWatchPersistentRecursive AddWatchMode = 1
)

func (m AddWatchMode) String() string {
	switch m {
	case AddWatchPersistent:
		return "PERSISTENT"
	case AddWatchPersistentRecursive:
		return "PERSISTENT_RECURSIVE"
	}
	return "AddWatchMode(" + strconv.FormatInt(int64(m), 10) + ")"
}

// Perms is the perms bit set of an ACL (ZooDefs.Perms).
type Perms int32

// Permission bits.
const (
	PermRead   Perms = 1
	PermWrite  Perms = 2
	PermCreate Perms = 4
	PermDelete Perms = 8
	PermAdmin  Perms = 16
	PermAll    Perms = 31
)
