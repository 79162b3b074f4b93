package proxy

import (
	"testing"
	"unsafe"
)

// TestIdleStructSizeClasses keeps the structs every idle session holds
// inside the Go allocator's size classes they fit today: the allocator
// rounds each object up to its class, so a field that crosses a boundary
// costs every session the whole step (frameReader went from the 320-byte
// class to 288 by moving one bool beside the others, Session from 768 to
// 704 by packing its small fields, upstream from 288 to 256 by passing its
// inline ping handler instead of keeping it; docs/benchmarks.md, "Idle
// memory at 9,000 sessions"). Crossing one may be worth it; this makes it
// a decision. (The parker's four bound callbacks per session went as well,
// for the parkedPump interface: 80 B of closures, not counted here.)
func TestIdleStructSizeClasses(t *testing.T) {
	for _, c := range []struct {
		name  string
		size  uintptr
		class uintptr
	}{
		{"Session", unsafe.Sizeof(Session{}), 704},
		{"frameReader (two per session)", unsafe.Sizeof(frameReader{}), 288},
		{"upstream", unsafe.Sizeof(upstream{}), 256},
	} {
		if got := allocatedSize(c.size); got > c.class {
			t.Errorf("%s is %d bytes (%d allocated), over the %d-byte size class it fitted", c.name, c.size, got, c.class)
		}
	}
}

// allocatedSize is what the heap needs for an object of size bytes that
// holds pointers: above 512 bytes the runtime puts an 8-byte header before
// it (its pointer map; runtime/mbitmap.go, heapBitsInSpan), which counts
// towards the size class. A 704-byte Session took a 768-byte slot.
func allocatedSize(size uintptr) uintptr {
	if size > 512 {
		return size + 8
	}
	return size
}
