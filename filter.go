package main

// The kernel filter: a classic BPF program, built in Go with x/net/bpf
// and attached to the capture socket (ring.go), that passes only TCP to
// or from the watched ports, so that the kernel copies nothing else into
// the ring.

import (
	"fmt"
	"sort"
	"strconv"

	"golang.org/x/net/bpf"
)

// filterConfig describes the kernel filter to build.
type filterConfig struct {
	link    int      // linkEthernet, linkRaw, or linkAny
	ports   []uint16 // nil: every TCP port
	snaplen int      // bytes kept of an accepted frame
	loIndex int      // ifindex of lo when its looped-back copies can be seen
}

// Packet types of the kernel (skb->pkt_type) and a fragment mask.
const (
	packetOutgoing = 4      // PACKET_OUTGOING
	ipv4FragOffset = 0x1fff // fragment offset bits of IPv4 flags+offset
)

// buildFilter assembles the kernel filter: accept TCP over IPv4 or IPv6
// (with up to two VLAN tags on Ethernet) to or from one of the ports.
// IPv6 packets whose first next header is an extension header go to user
// space, which walks the chain; later IPv4 fragments are refused.
//
// On lo every frame passes the socket twice, once going out and once
// coming in; a prefix drops the outgoing copy so each is logged once.
// That prefix uses kernel extensions that x/net/bpf's VM cannot run, so
// the tests run the rest (portFilter) in the VM and the prefix live.
func buildFilter(c filterConfig) ([]bpf.RawInstruction, error) {
	var prog []bpf.Instruction
	switch {
	case c.loIndex != 0 && c.link == linkAny:
		prog = []bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtInterfaceIndex},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(c.loIndex), SkipTrue: 3},
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: packetOutgoing, SkipTrue: 1},
			bpf.RetConstant{Val: 0},
		}
	case c.loIndex != 0:
		prog = []bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtType},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: packetOutgoing, SkipTrue: 1},
			bpf.RetConstant{Val: 0},
		}
	}
	if c.link == linkAny {
		// Dispatch on the device type: Ethernet and loopback frames to the
		// Ethernet program, all others to the raw IP one. Each program ends
		// in its own returns, so they can simply follow each other.
		eth, err := portFilter(linkEthernet, c.ports, c.snaplen)
		if err != nil {
			return nil, err
		}
		raw, err := portFilter(linkRaw, c.ports, c.snaplen)
		if err != nil {
			return nil, err
		}
		prog = append(prog,
			bpf.LoadExtension{Num: bpf.ExtLinkLayerType},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: 2},   // ARPHRD_ETHER
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: 772, SkipTrue: 1}, // ARPHRD_LOOPBACK
			bpf.Jump{Skip: uint32(len(eth))},
		)
		prog = append(prog, eth...)
		prog = append(prog, raw...)
	} else {
		body, err := portFilter(c.link, c.ports, c.snaplen)
		if err != nil {
			return nil, err
		}
		prog = append(prog, body...)
	}
	if len(prog) > maxFilter {
		return nil, fmt.Errorf("%d instructions, more than the kernel takes (%d)", len(prog), maxFilter)
	}
	return bpf.Assemble(prog)
}

// maxFilter is the most instructions the kernel takes in a classic BPF
// program (BPF_MAXINSNS in include/uapi/linux/bpf_common.h).
const maxFilter = 4096

// checkFilterSize tells whether the kernel filter for ports fits in
// maxFilter instructions on device ("any" or an interface), before the
// device is looked at: it assumes the larger of the Ethernet and raw IP
// programs, and the prefix for lo. The error says how many ports fit.
func checkFilterSize(ports []uint16, device string) error {
	links := []int{linkEthernet, linkRaw}
	if device == "any" {
		links = []int{linkAny}
	}
	size := func(ports []uint16) int {
		n := 0
		for _, link := range links {
			prog, err := buildFilter(filterConfig{link: link, ports: ports, loIndex: 1})
			if err != nil {
				return maxFilter + 1
			}
			n = max(n, len(prog))
		}
		return n
	}
	if ports == nil || size(ports) <= maxFilter {
		return nil
	}
	// The most separate ports (no two consecutive) that fit: 1, 3, 5, …
	most := sort.Search(maxFilter, func(n int) bool {
		odd := make([]uint16, n+1)
		for i := range odd {
			odd[i] = uint16(2*i + 1)
		}
		return size(odd) > maxFilter
	})
	where := "on one interface"
	if device == "any" {
		where = "with -i any"
	}
	return fmt.Errorf("%d ports are more than the kernel filter holds %s: at most %d (a run of consecutive ports counts as two)",
		len(ports), where, most)
}

// portFilter is the part of the kernel filter the BPF VM can run.
//
// Registers: A holds the value under test, X the offset of the current
// header. Labels are resolved by a small assembler below, since classic
// BPF jumps are relative and counted in instructions. A conditional jump
// skips at most 255 instructions, so the port tests, which can be
// thousands, come last, each within reach of a return of their own
// (portTests); everything before them jumps to them unconditionally.
// It is long because it is one program, read top to bottom as the kernel
// runs it.
func portFilter(link int, ports []uint16, snaplen int) ([]bpf.Instruction, error) {
	// Room for the tests of both ports, so that long lists grow nothing.
	a := &asm{prog: make([]bpf.Instruction, 0, 64+4*len(ports)), fixups: make([]fixup, 0, 48+4*len(ports))}
	if link == linkEthernet {
		// A = EtherType after up to two VLAN tags, X = network offset.
		a.op(bpf.LoadAbsolute{Off: 12, Size: 2})
		a.ldx(14)
		for _, off := range []uint32{16, 20} {
			tag := fmt.Sprint("tag", off)
			a.jeq(etherVLAN, tag, "")
			a.jeq(etherQinQ, tag, "")
			a.jeq(etherQinQv1, tag, "notag")
			a.label(tag)
			a.op(bpf.LoadAbsolute{Off: off, Size: 2})
			a.ldx(off + 2)
		}
		// A third tag: too deep for the filter; user space decodes any number.
		a.jeq(etherVLAN, "accept", "")
		a.jeq(etherQinQ, "accept", "")
		a.jeq(etherQinQv1, "accept", "")
		a.label("notag")
		a.jeq(etherIPv4, "ipv4", "")
		a.jeq(etherIPv6, "ipv6", "reject")
	} else {
		// Raw IP: the version nibble tells IPv4 from IPv6, X = 0.
		a.ldx(0)
		a.op(bpf.LoadAbsolute{Off: 0, Size: 1})
		a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4})
		a.jeq(4, "ipv4", "")
		a.jeq(6, "ipv6", "reject")
	}

	a.label("ipv4")
	a.op(bpf.LoadIndirect{Off: 9, Size: 1})
	a.jeq(6, "", "reject") // not TCP
	a.op(bpf.LoadIndirect{Off: 6, Size: 2})
	a.jset(ipv4FragOffset, "reject", "") // a later fragment
	// X += 4 * IHL: the TCP header follows the IPv4 header and its options.
	a.op(bpf.LoadIndirect{Off: 0, Size: 1})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2})
	a.op(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	a.op(bpf.TAX{})
	a.jmp("ports")

	a.label("ipv6")
	a.op(bpf.LoadIndirect{Off: 6, Size: 1})
	a.jeq(6, "tcp6", "")
	for _, ext := range []uint32{ip6HopByHop, ip6Routing, ip6Fragment, ip6AH, ip6DestOpts, ip6Mobility, ip6HIP, ip6Shim6} {
		a.jeq(ext, "accept", "") // user space walks the extension headers
	}
	a.jmp("reject")
	a.label("tcp6")
	a.op(bpf.TXA{})
	a.op(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 40})
	a.op(bpf.TAX{})
	a.jmp("ports")

	if len(ports) == 0 {
		a.label("ports") // every port
	}
	a.label("accept")
	a.op(bpf.RetConstant{Val: uint32(snaplen)})
	a.label("reject")
	a.op(bpf.RetConstant{Val: 0})
	if len(ports) > 0 {
		a.label("ports")
		runs := portRuns(ports)
		for _, field := range []uint32{0, 2} { // source port, destination port
			a.op(bpf.LoadIndirect{Off: field, Size: 2})
			a.portTests(runs, snaplen)
		}
		a.op(bpf.RetConstant{Val: 0}) // neither port is one of them
	}
	return a.assemble()
}

// portRuns merges sorted ports into runs of consecutive ports, {first,
// last}: a run costs two tests however long it is.
func portRuns(ports []uint16) [][2]uint16 {
	var runs [][2]uint16
	for _, p := range ports {
		if n := len(runs); n > 0 && int(runs[n-1][1])+1 == int(p) {
			runs[n-1][1] = p
			continue
		}
		runs = append(runs, [2]uint16{p, p})
	}
	return runs
}

// testsPerReturn bounds the tests in front of one return: the first test
// jumps over the others to it, and a conditional jump skips at most 255.
const testsPerReturn = 255

// portTests accepts a packet whose A is in one of runs, and goes on after
// them otherwise. The tests are cut into groups, each followed by a
// return of the snap length that its tests jump to on a match; the last
// test of a group jumps over that return on a miss. A single port is one
// test (jeq), a run two (jge first, jgt last).
func (a *asm) portTests(runs [][2]uint16, snaplen int) {
	for len(runs) > 0 {
		n, size := 0, 0 // runs in this group, and their tests
		for n < len(runs) && size+runCost(runs[n]) <= testsPerReturn {
			size += runCost(runs[n])
			n++
		}
		hit, miss := a.newLabel(), a.newLabel()
		for i, r := range runs[:n] {
			next := "" // the next test
			if i == n-1 {
				next = miss
			}
			if r[0] == r[1] {
				a.jif(bpf.JumpEqual, uint32(r[0]), hit, next)
				continue
			}
			after := next // past the run's second test
			if after == "" {
				after = a.newLabel()
			}
			a.jif(bpf.JumpGreaterOrEqual, uint32(r[0]), "", after)
			a.jif(bpf.JumpGreaterThan, uint32(r[1]), after, hit)
			if after != miss {
				a.label(after)
			}
		}
		a.label(hit)
		a.op(bpf.RetConstant{Val: uint32(snaplen)})
		a.label(miss)
		runs = runs[n:]
	}
}

func runCost(r [2]uint16) int {
	if r[0] == r[1] {
		return 1
	}
	return 2
}

// asm collects BPF instructions with symbolic jump targets.
type asm struct {
	prog   []bpf.Instruction
	labels map[string]int
	fixups []fixup
	made   int // labels made by newLabel
}

// fixup records a jump whose targets are labels ("" = next instruction).
type fixup struct {
	at          int
	true, false string
}

func (a *asm) op(i bpf.Instruction) { a.prog = append(a.prog, i) }
func (a *asm) ldx(v uint32)         { a.op(bpf.LoadConstant{Dst: bpf.RegX, Val: v}) }

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.prog)
}

// newLabel returns a label name not used yet, to be placed by label.
func (a *asm) newLabel() string {
	a.made++
	return "." + strconv.Itoa(a.made)
}

// jif tests A against v, going to label t if the test holds, else to f.
func (a *asm) jif(cond bpf.JumpTest, v uint32, t, f string) {
	a.fixups = append(a.fixups, fixup{len(a.prog), t, f})
	a.op(bpf.JumpIf{Cond: cond, Val: v})
}

func (a *asm) jeq(v uint32, t, f string)     { a.jif(bpf.JumpEqual, v, t, f) }
func (a *asm) jset(mask uint32, t, f string) { a.jif(bpf.JumpBitsSet, mask, t, f) }

func (a *asm) jmp(to string) {
	a.fixups = append(a.fixups, fixup{len(a.prog), to, ""})
	a.op(bpf.Jump{})
}

// assemble resolves labels into relative skips. It refuses a label that
// is missing or behind its jump (classic BPF jumps only forward), and a
// conditional jump of more than 255 instructions, which its 8 bits cannot
// hold; an unconditional jump has 32.
func (a *asm) assemble() ([]bpf.Instruction, error) {
	skip := func(from int, label string) (uint32, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := a.labels[label]
		if !ok || to <= from {
			return 0, fmt.Errorf("BPF jump at %d to a missing or earlier label %q", from, label)
		}
		return uint32(to - from - 1), nil
	}
	for _, f := range a.fixups {
		t, err := skip(f.at, f.true)
		if err != nil {
			return nil, err
		}
		e, err := skip(f.at, f.false)
		if err != nil {
			return nil, err
		}
		switch ins := a.prog[f.at].(type) {
		case bpf.JumpIf:
			if t > 255 || e > 255 {
				return nil, fmt.Errorf("BPF conditional jump at %d of %d instructions, more than 255", f.at, max(t, e))
			}
			ins.SkipTrue, ins.SkipFalse = uint8(t), uint8(e)
			a.prog[f.at] = ins
		case bpf.Jump:
			ins.Skip = t
			a.prog[f.at] = ins
		}
	}
	return a.prog, nil
}
