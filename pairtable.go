package main

// The pairing table's storage: each parser's preallocated open-addressing
// table of connection entries, mapped outside Go's heap, with the list of
// entries by last use that finds the longest idle one in constant time.
// pairing.go holds the rules that decide what an entry's requests answer.

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pairKey is a connection, the same for both directions: the two
// endpoints, the lower one first. IPv4 addresses are stored IPv4-mapped.
type pairKey struct {
	lo, hi         [16]byte
	loPort, hiPort uint16
}

// makePairKey builds the key of the connection between src and dst, and
// says whether src is the key's lower endpoint.
func makePairKey(src, dst netip.AddrPort, k *pairKey) (srcLo bool) {
	s, d := src.Addr().As16(), dst.Addr().As16() // IPv4 comes IPv4-mapped
	// The bytes compared as two big-endian words each: bytes.Compare's
	// order, without its call.
	sh, dh := binary.BigEndian.Uint64(s[:8]), binary.BigEndian.Uint64(d[:8])
	sl, dl := binary.BigEndian.Uint64(s[8:]), binary.BigEndian.Uint64(d[8:])
	srcLo = sh < dh || sh == dh && (sl < dl || sl == dl && src.Port() <= dst.Port())
	if srcLo {
		k.lo, k.hi, k.loPort, k.hiPort = s, d, src.Port(), dst.Port()
	} else {
		k.lo, k.hi, k.loPort, k.hiPort = d, s, dst.Port(), src.Port()
	}
	return srcLo
}

// newPairTable makes a table for maxConns connections (at least one). The
// index has at least twice as many slots, so probes stay short.
//
// Both arrays are mapped from the kernel, outside Go's heap (they hold no
// pointers): the collector lets the heap grow by as much as is live before
// it collects, so a table of hundreds of megabytes on the heap let as much
// garbage pile up, and resident memory reached twice the table's size
// (TestPairMemory). Pages are touched only as entries are used (in huge
// pages where the system has them: mapOffHeap). Should the mapping fail,
// the heap serves.
func newPairTable(maxConns int, timeout time.Duration) *pairTable {
	n := max(maxConns, 1)
	slots := 2
	for slots < 2*n {
		slots *= 2
	}
	t := &pairTable{mask: uint32(slots - 1), timeout: int64(timeout)}
	size := n * int(unsafe.Sizeof(pairEntry{})) // a multiple of 8: the index after it is aligned
	mem := mapOffHeap(t, size+slots*4)
	if mem == nil {
		t.entries, t.index = make([]pairEntry, n), make([]uint32, slots)
		return t
	}
	t.entries = unsafe.Slice((*pairEntry)(unsafe.Pointer(&mem[0])), n)
	t.index = unsafe.Slice((*uint32)(unsafe.Pointer(&mem[size])), slots)
	return t
}

// mapOffHeap maps size bytes of zeroes from the kernel, outside Go's heap,
// for arrays of owner that hold no pointers, and unmaps them when owner
// is collected (tables of tests come and go). It returns nil when the
// mapping fails: the caller allocates on the heap instead.
//
// The mapping asks for transparent huge pages (MADV_HUGEPAGE; a no-op
// where they are off): the table is read at random places, one or two per
// packet, and with 4 KiB pages nearly each of those reads missed the TLB
// as well as the cache; live at 200k packets/s that made -pair cost
// 1.29–1.65× the CPU without it, 1.00–1.10× with huge pages
// (docs/BENCHMARKS.md). Memory is still touched only as it is used, in
// steps of 2 MiB instead of 4 KiB.
func mapOffHeap[T any](owner *T, size int) []byte {
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil
	}
	unix.Madvise(mem, unix.MADV_HUGEPAGE) // advice only: without it, 4 KiB pages
	runtime.AddCleanup(owner, func(mem []byte) { unix.Munmap(mem) }, mem)
	return mem
}

// memory is the bytes the table holds, fixed at start.
func (t *pairTable) memory() int {
	n := len(t.entries)*int(unsafe.Sizeof(pairEntry{})) + len(t.index)*4
	if t.texts != nil {
		n += t.texts.memory()
	}
	return n
}

// find returns the entry (index + 1) of connection k, or 0. The index is
// at most half full, so the probe always meets an empty slot.
func (t *pairTable) find(k *pairKey, h uint32) uint32 {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		v := t.index[i]
		if v == 0 {
			return 0
		}
		if e := &t.entries[v-1]; e.hash == h && e.key == *k {
			return v
		}
	}
}

// insert adds connection k as the newest; when the table is full, the
// connection idle the longest (the LRU list's oldest) makes room.
func (t *pairTable) insert(k *pairKey, h uint32, clientLo bool, ts int64) uint32 {
	if t.used == len(t.entries) {
		t.stats.evicted++
		t.remove(t.oldest)
	}
	var v uint32
	if t.free != 0 {
		v = t.free
		t.free = t.entries[v-1].next
	} else {
		t.fresh++
		v = t.fresh
	}
	e := &t.entries[v-1]
	*e = pairEntry{key: *k, hash: h, seen: ts}
	if clientLo {
		e.flags = fClientLo
	}
	i := h & t.mask
	for t.index[i] != 0 {
		i = (i + 1) & t.mask
	}
	t.index[i] = v
	t.linkNewest(v)
	t.used++
	return v
}

// remove gives up the waiting requests of entry v and frees it.
func (t *pairTable) remove(v uint32) {
	e := &t.entries[v-1]
	t.stats.unanswered += uint64(e.n)
	t.forgetTexts(v, e)
	e.n = 0
	t.unlink(v)
	// Backward-shift deletion: later entries of the probe run move into
	// the hole unless their home slot lies after it.
	i := e.hash & t.mask
	for t.index[i] != v {
		i = (i + 1) & t.mask
	}
	for j := i; ; {
		j = (j + 1) & t.mask
		w := t.index[j]
		if w == 0 {
			break
		}
		home := t.entries[w-1].hash & t.mask
		if i <= j && i < home && home <= j || i > j && (i < home || home <= j) {
			continue // w's home is in (i, j]: it stays reachable
		}
		t.index[i] = w
		i = j
	}
	t.index[i] = 0
	e.next = t.free
	t.free = v
	t.used--
}

// touch records activity on entry v at ts and makes it the newest.
func (t *pairTable) touch(v uint32, ts int64) {
	e := &t.entries[v-1]
	if ts > e.seen {
		e.seen = ts
	}
	if t.newest != v {
		t.unlink(v)
		t.linkNewest(v)
	}
}

func (t *pairTable) linkNewest(v uint32) {
	e := &t.entries[v-1]
	e.prev, e.next = 0, t.newest
	if t.newest != 0 {
		t.entries[t.newest-1].prev = v
	} else {
		t.oldest = v
	}
	t.newest = v
}

func (t *pairTable) unlink(v uint32) {
	e := &t.entries[v-1]
	if e.prev != 0 {
		t.entries[e.prev-1].next = e.next
	} else {
		t.newest = e.next
	}
	if e.next != 0 {
		t.entries[e.next-1].prev = e.prev
	} else {
		t.oldest = e.prev
	}
}
