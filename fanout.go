package main

// The fanout group of -readers N: N capture sockets (ring.go) that the
// kernel hands each frame to one of, by the result of a classic BPF
// program built here: a symmetric hash of the frame's connection, so that
// both directions of a connection reach one reader. docs/DESIGN.md
// ("Fan-out") has the kernel's rules and why not its own hash.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// linkState is what the sockets on one interface know of it together:
// each sees the interface go down and come up, and it is said once.
type linkState struct {
	down atomic.Bool // said to be down, and not said to be up since
}

// fanoutType is the kind of fanout group the readers join: the kernel
// hands each frame to the member the group's classic BPF program names
// (PACKET_FANOUT_CBPF, Linux 4.3), after putting IPv4 fragments back
// together (PACKET_FANOUT_FLAG_DEFRAG), so that a fragmented packet is
// hashed whole. The program is buildFanout's symmetric hash of the
// connection: both directions of a connection reach one socket. The
// kernel's own hash (PACKET_FANOUT_HASH) is not symmetric for IPv6 when
// one side sets a flow label and the other does not (docs/DESIGN.md).
const fanoutType = unix.PACKET_FANOUT_CBPF | unix.PACKET_FANOUT_FLAG_DEFRAG

// rejectAll is the filter of a socket until its group is complete: a
// socket must be bound before it can join a group, and a bound socket
// outside the group would get every frame besides the group's share.
var rejectAll = []bpf.RawInstruction{{Op: unix.BPF_RET | unix.BPF_K, K: 0}}

// openGroup opens n sockets like t and joins them in one fanout group.
// Each is prepared with the rejectAll filter (socket, ring, bound), then
// they join the group, the first one with a group id the kernel picks
// and the group's program, and only then does each get the real filter
// prog: no frame reaches a ring unfiltered, and none reaches two.
func openGroup(t *liveSource, n int, prog []bpf.RawInstruction) (srcs []*liveSource, id uint16, err error) {
	defer func() {
		if err != nil {
			for _, s := range srcs {
				s.close()
			}
			srcs = nil
		}
	}()
	member := func() (*liveSource, error) {
		s := &liveSource{fd: -1, g: t.g, link: t.link, addVLAN: t.addVLAN, iface: t.iface, ifindex: t.ifindex, logf: t.logf, state: t.state}
		srcs = append(srcs, s)
		return s, s.prepare(t.ifindex, rejectAll)
	}
	for range n {
		if _, err := member(); err != nil {
			return srcs, 0, err
		}
	}
	hash, err := buildFanout(newFanoutKeys())
	if err != nil {
		return srcs, 0, fmt.Errorf("building the fanout program: %v", err)
	}
	id, err = joinUnique(srcs[0].fd)
	if errors.Is(err, errNoUniqueID) {
		// The socket is in a group of id 0, which any other process may
		// share: a new socket joins a group of an id of our own.
		srcs[0].close()
		srcs = srcs[1:]
		var first *liveSource
		if first, err = member(); err != nil {
			return srcs, 0, err
		}
		srcs = append([]*liveSource{first}, srcs[:len(srcs)-1]...)
		id, err = joinNumbered(first.fd, uint16(os.Getpid()))
	}
	if err != nil {
		return srcs, 0, err
	}
	fprog := sockFprog(hash)
	if err := unix.SetsockoptSockFprog(srcs[0].fd, unix.SOL_PACKET, unix.PACKET_FANOUT_DATA, &fprog); err != nil {
		return srcs, id, fmt.Errorf("giving fanout group %d its program (PACKET_FANOUT_DATA): %v", id, err)
	}
	for _, s := range srcs[1:] {
		if err := setFanout(s.fd, id, fanoutType); err != nil {
			return srcs, id, fmt.Errorf("joining fanout group %d (PACKET_FANOUT): %v", id, err)
		}
	}
	for _, s := range srcs {
		if err := attachFilter(s.fd, prog); err != nil {
			return srcs, id, err
		}
	}
	for _, s := range srcs {
		if err := s.start(); err != nil {
			return srcs, id, err
		}
	}
	g := &ringGroup{members: srcs}
	g.open.Store(int32(len(srcs)))
	for _, s := range srcs {
		s.group = g
	}
	return srcs, id, nil
}

// setFanout joins socket fd to the fanout group id of the given type and
// flags, making the group if the network namespace has none of that id.
func setFanout(fd int, id uint16, typeFlags int) error {
	return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT, int(id)|typeFlags<<16)
}

// errNoUniqueID: the kernel does not know PACKET_FANOUT_FLAG_UNIQUEID.
var errNoUniqueID = errors.New("the kernel cannot pick a fanout group id")

// joinUnique makes a new fanout group with socket fd as its first member,
// of an id no other group of the network namespace has: the kernel picks
// it (PACKET_FANOUT_FLAG_UNIQUEID, Linux 4.12), and it is read back.
// A kernel before 4.12 takes the flag without a word and makes a group of
// id 0 that keeps it; that is errNoUniqueID.
func joinUnique(fd int) (uint16, error) {
	if err := setFanout(fd, 0, fanoutType|unix.PACKET_FANOUT_FLAG_UNIQUEID); err != nil {
		return 0, fmt.Errorf("the kernel refuses a fanout group (PACKET_FANOUT): %v; -readers needs Linux 4.3 or later", err)
	}
	v, err := unix.GetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_FANOUT)
	if err != nil {
		return 0, fmt.Errorf("reading the fanout group id (PACKET_FANOUT): %v", err)
	}
	if uint32(v)>>24&(unix.PACKET_FANOUT_FLAG_UNIQUEID>>8) != 0 {
		return 0, errNoUniqueID
	}
	return uint16(v), nil
}

// fanoutTries: how many group ids joinNumbered tries.
const fanoutTries = 16

// joinNumbered makes a new fanout group with socket fd as its first
// member, of the id first or one of the fanoutTries-1 ids after it. A
// group of another process with that id and other settings refuses the
// socket (EINVAL), and the next id is tried; one with the same settings
// cannot be told from a new group: with this process's id as first, that
// needs another httplog of the same pid (another pid namespace) on the
// same network namespace. Only for kernels without
// PACKET_FANOUT_FLAG_UNIQUEID.
func joinNumbered(fd int, first uint16) (uint16, error) {
	var err error
	for i := range uint16(fanoutTries) {
		id := first + i
		if err = setFanout(fd, id, fanoutType); err == nil {
			return id, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	return 0, fmt.Errorf("the kernel refuses a fanout group (PACKET_FANOUT) of ids %d to %d: %v", first, first+fanoutTries-1, err)
}

// The fanout program. With -readers N, the kernel hands each frame to one
// of N sockets: the one this classic BPF program names (its result modulo
// N). It hashes the connection symmetrically, so that both directions of
// a connection reach one reader, which sends them to one parser in the
// order captured.

// fanoutKeys are the odd multipliers of the fanout hash, drawn at start so
// that nobody outside can make connections that all land on one reader:
// four for the 32-bit words of the addresses, one for the ports.
type fanoutKeys [5]uint32

func newFanoutKeys() fanoutKeys {
	var k fanoutKeys
	for i := range k {
		k[i] = rand.Uint32() | 1
	}
	return k
}

// skfNetOff is SKF_NET_OFF (-0x100000) as an offset: a load at
// skfNetOff+k reads byte k from the network header, wherever the frame's
// data begins (at the link-layer header for frames going out, after it
// for frames coming in).
const skfNetOff = 0xfff00000

// buildFanout assembles the fanout program for the kernel: it reads the
// frame from the network header the kernel found (SKF_NET_OFF), whatever
// the link type, and the kernel's protocol of the frame (skb->protocol).
func buildFanout(keys fanoutKeys) ([]bpf.RawInstruction, error) {
	prog, err := fanoutProgram(skfNetOff, bpf.LoadExtension{Num: bpf.ExtProto}, keys)
	if err != nil {
		return nil, err
	}
	return bpf.Assemble(prog)
}

// fanoutProgram is the fanout program, its loads at base+offset from the
// network header and the frame's protocol loaded by proto (the tests run
// it in x/net/bpf's VM with a constant).
//
// It hashes the connection of the IP packet at the network header: the
// sum, over the 32-bit words of the addresses, of the source word XOR the
// destination word times its key, plus, for TCP, the source port XOR the
// destination port times the last key; the top 16 bits of the sum. XOR
// makes the hash symmetric, the keys unpredictable. Ports count in IPv4
// packets but later fragments (which have none), and in IPv6 packets
// whose first next header is TCP (rarely any other for TCP, whose packets
// of one connection all look alike). What is not IP hashes to 0.
//
// A VLAN protocol has two meanings. A frame coming in with two tags has
// the inner one at the network header, and the IP header after it (the
// kernel took the outer one out). A frame going out with a tag the kernel
// put in itself (a NIC without VLAN offload) has the IP header at the
// network header. The 4 bytes at the network header tell them apart: a
// tag's are the TCI and the Ethernet type of what follows it (IPv4 or
// IPv6, whose version the next byte must have).
//
// It is long because it is one program, read top to bottom as the kernel
// runs it.
func fanoutProgram(base uint32, proto bpf.Instruction, keys fanoutKeys) ([]bpf.Instruction, error) {
	const mHash, mTmp, mIP = 0, 1, 2 // scratch memory: the sum, a word, the IP header's offset
	a := &asm{}
	ld := func(size int, off uint32) { a.op(bpf.LoadIndirect{Off: base + off, Size: size}) }
	version := func() { // A = the IP version of the byte at X
		ld(1, 0)
		a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
	}
	// X = the offset of the IP header from the network header, 0 or 4.
	a.op(proto)
	a.jeq(etherVLAN, "tag", "")
	a.jeq(etherQinQ, "tag", "")
	a.jeq(etherQinQv1, "tag", "ip")
	a.label("tag")
	a.ldx(0)
	ld(2, 2)
	a.jeq(etherIPv4, "", "tag6")
	a.ldx(4)
	version()
	a.jeq(4, "", "ip")
	a.jmp("behind")
	a.label("tag6")
	a.jeq(etherIPv6, "", "ip")
	a.ldx(4)
	version()
	a.jeq(6, "behind", "ip")
	a.label("ip")
	a.ldx(0)
	a.label("behind")

	// pair adds (field s XOR field d) times key to the sum (first: is
	// the sum), the fields size bytes at offsets s and d from X; then X
	// is the IP header's offset again.
	pair := func(size int, s, d, key uint32, first bool) {
		ld(size, s)
		a.op(bpf.StoreScratch{Src: bpf.RegA, N: mTmp})
		ld(size, d)
		a.op(bpf.LoadScratch{Dst: bpf.RegX, N: mTmp})
		a.op(bpf.ALUOpX{Op: bpf.ALUOpXor})
		a.op(bpf.ALUOpConstant{Op: bpf.ALUOpMul, Val: key})
		if !first {
			a.op(bpf.LoadScratch{Dst: bpf.RegX, N: mHash})
			a.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
		}
		a.op(bpf.StoreScratch{Src: bpf.RegA, N: mHash})
		a.op(bpf.LoadScratch{Dst: bpf.RegX, N: mIP})
	}
	a.op(bpf.StoreScratch{Src: bpf.RegX, N: mIP})
	version()
	a.jeq(4, "ipv4", "")
	a.jeq(6, "ipv6", "other")

	a.label("ipv4")
	pair(4, 12, 16, keys[0], true)
	ld(1, 9)
	a.jeq(6, "", "done") // not TCP: the addresses
	ld(2, 6)
	a.jset(ipv4FragOffset, "done", "") // a later fragment: no ports
	// X += 4 * IHL: the TCP header.
	ld(1, 0)
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
	a.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	a.op(bpf.TAX{})
	pair(2, 0, 2, keys[4], false)
	a.jmp("done")

	a.label("ipv6")
	for i := range uint32(4) {
		pair(4, 8+4*i, 24+4*i, keys[i], i == 0)
	}
	ld(1, 6)
	a.jeq(6, "", "done") // not TCP, or an extension header: the addresses
	a.op(bpf.TXA{})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40})
	a.op(bpf.TAX{})
	pair(2, 0, 2, keys[4], false)

	a.label("done")
	a.op(bpf.LoadScratch{Dst: bpf.RegA, N: mHash})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 16})
	a.op(bpf.RetA{})
	a.label("other")
	a.op(bpf.RetConstant{Val: 0})
	return a.assemble()
}
