package main

// TestE2EVLAN (see e2e_test.go and docs/E2E.md): requests over VLANs, on
// 802.1Q sub-interfaces and on a veth made a VLAN trunk by eBPF programs.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// e2eTag is a VLAN tag: its TPID (0x8100 802.1Q, 0x88a8 802.1ad) and ID.
type e2eTag struct {
	tpid uint16
	id   uint16
}

// TestE2EVLAN: requests over 802.1Q VLANs, with httplog on the parent
// (untagged) device, or on all devices (-i any), with and without
// -add_vlan.
//
//   - sub-interface: VLAN 100 as `ip link add link VETH name VETH.100 type
//     vlan id 100` on both ends of the client–server veth, with addresses
//     of its own. Needs a kernel with 802.1Q (CONFIG_VLAN_8021Q); skipped,
//     saying so, on one without.
//   - trunk: the client–server veth made a VLAN trunk by small eBPF
//     programs (tcx, on both ends) that push the tags on the way out and pop
//     them on the way in, as the kernel does for a VLAN device on a NIC with
//     VLAN offload: the packet socket sees each frame with its tag, before
//     the pop and after the push. Once with one tag (VLAN 100, held in the
//     packet's metadata, as offloaded), once with two (802.1ad 200 outside,
//     in the metadata; 802.1Q 100 inside, in the frame). This runs on any
//     kernel with tcx (6.6 and later).
//
// veth offloads the tags, so without -add_vlan httplog sees the frames
// without their outer tag; with -add_vlan the tag is put back into the
// frame and the decoder (and, for the inner tag, the kernel filter) must
// step over it. Either way every request and response is logged, exactly
// once and exactly right.
func TestE2EVLAN(t *testing.T) {
	t.Run("sub-interface", e2eVLANSubInterface)
	t.Run("trunk", e2eVLANTrunk)
}

// e2eVLANRun starts httplog with flags in the server namespace, makes the
// requests from the client, stops httplog and checks the lines: CQ/CR, or
// the types given for the group of requests over the VLAN.
func e2eVLANRun(t *testing.T, tp *topology, iface string, flags []string, vlanReqs, plainReqs []curlRequest, vlanTypes [2]string, check func(x exchange) error) int {
	t.Helper()
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, iface, dir, flags...)
	from := time.Now()
	var vlan, plain []exchange
	for _, r := range vlanReqs {
		x := tp.curl(t, tp.cliNS, r)
		if err := check(x); err != nil {
			t.Fatalf("curl %s: %v", r.url, err)
		}
		vlan = append(vlan, x)
	}
	for _, r := range plainReqs {
		plain = append(plain, tp.curl(t, tp.cliNS, r))
	}
	to := time.Now()
	stderr := stopHttplog(t, d)
	count := expectExchanges(t, readLogDir(t, dir), from, to, exchangeGroup{vlan, vlanTypes[0], vlanTypes[1]}, exchangeGroup{plain, "CQ", "CR"})
	checkFinalStats(t, stderr, count)
	checkLogBytes(t, dir)
	return len(vlan) + len(plain)
}

func e2eVLANSubInterface(t *testing.T) {
	tp := newTopology(t)
	srvV := linkEnd{tp.srvNS, tp.srvIf, fmt.Sprintf("10.202.%d.1", tp.x), "fd00:202::1"}
	cliV := linkEnd{tp.cliNS, tp.cliIf, fmt.Sprintf("10.202.%d.2", tp.x), "fd00:202::2"}
	probe := tp.srvIf + ".99"
	if out, err := exec.Command(tp.ip, "-n", tp.srvNS, "link", "add", "link", tp.srvIf, "name", probe, "type", "vlan", "id", "99").CombinedOutput(); err != nil {
		t.Skipf("this kernel makes no 802.1Q sub-interface (ip link add … type vlan: %v: %s): it lacks CONFIG_VLAN_8021Q; the trunk test covers VLAN frames on the parent", err, bytes.TrimSpace(out))
	}
	tp.run("-n", tp.srvNS, "link", "del", probe)
	tp.addVLAN(srvV, 100)
	tp.addVLAN(cliV, 100)
	ng := tp.startNginx(tp.srvNS)
	reqs := portRequests(srvV, "hl-vlan")
	plain := []curlRequest{{method: "GET", url: httpURL(tp.srv4, 80, "/hello.txt"), ua: "hl-untagged/1"}}
	check := func(x exchange) error {
		srv, cli := x.server.Addr().String(), x.client.Addr().String()
		if !(srv == srvV.v4 && cli == cliV.v4 || srv == srvV.v6 && cli == cliV.v6) {
			return fmt.Errorf("went %s → %s, not over the VLAN", endpoint(x.client), endpoint(x.server))
		}
		return nil
	}
	local := "-local=" + strings.Join([]string{tp.srv4, tp.srv6, srvV.v4, srvV.v6}, ",")
	total := 0
	for _, run := range []struct {
		name      string
		flags     []string
		vlanTypes [2]string
	}{
		{"tags offloaded", []string{local}, [2]string{"CQ", "CR"}},
		{"-add_vlan", []string{"-add_vlan", local}, [2]string{"CQ", "CR"}},
		// Spec §3 as written: the VLAN's addresses are the sub-interface's,
		// not the capture interface's, so its server is another host's.
		{"without -local", nil, [2]string{"SQ", "SR"}},
	} {
		t.Logf("run: %s", run.name)
		total += e2eVLANRun(t, tp, tp.srvIf, run.flags, reqs, plain, run.vlanTypes, check)
		if t.Failed() {
			t.Fatalf("run %q failed", run.name)
		}
	}
	if access := ng.stop(t); len(access) != total {
		t.Errorf("nginx logged %d requests, the test made %d", len(access), total)
	}
}

func e2eVLANTrunk(t *testing.T) {
	tp := newTopology(t)
	ng := tp.startNginx(tp.srvNS)
	reqs := portRequests(tp.srvEnd(), "hl-trunk")
	ok := func(exchange) error { return nil }
	total := 0
	for _, tags := range []struct {
		name string
		tags []e2eTag // innermost first
	}{
		{"802.1Q 100", []e2eTag{{etherVLAN, 100}}},
		{"802.1ad 200 + 802.1Q 100", []e2eTag{{etherVLAN, 100}, {etherQinQ, 200}}},
	} {
		untag := e2eTagLink(t, tp, tags.tags)
		e2eCheckTagged(t, tp, tags.tags)
		total++
		for _, run := range []struct {
			iface string
			flags []string
		}{
			{tp.srvIf, nil},
			{tp.srvIf, []string{"-add_vlan"}},
			{"any", nil},
			{"any", []string{"-add_vlan"}},
		} {
			name := strings.Join(append([]string{tags.name, "-i", run.iface}, run.flags...), " ")
			t.Run(name, func(t *testing.T) {
				total += e2eVLANRun(t, tp, run.iface, run.flags, reqs, nil, [2]string{"CQ", "CR"}, ok)
			})
		}
		untag()
	}
	if access := ng.stop(t); len(access) != total {
		t.Errorf("nginx logged %d requests, the test made %d", len(access), total)
	}
}

// e2eTagLink makes the topology's client–server veth a VLAN trunk: on both
// ends a tcx egress program pushes the tags (innermost first, so the last
// is outermost: the kernel keeps it in the packet's metadata, as VLAN
// offload does, and moves the earlier ones into the frame), and a tcx
// ingress program pops them all before the stack sees the frame. The
// packet sockets of the device see the tagged frames, both ways. It
// returns a function that removes the programs; a cleanup does too.
func e2eTagLink(t *testing.T, tp *topology, tags []e2eTag) func() {
	t.Helper()
	push, pop := e2eVLANPrograms(tags)
	var fds []int
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
		fds = nil
	}
	t.Cleanup(closeAll)
	for _, prog := range []struct {
		code   []byte
		attach uint32
	}{{push, unix.BPF_TCX_EGRESS}, {pop, unix.BPF_TCX_INGRESS}} {
		pfd, err := e2eBPFLoad(prog.code)
		if err != nil {
			t.Fatalf("loading the VLAN tagging program: %v", err)
		}
		fds = append(fds, pfd)
		for _, end := range []linkEnd{tp.srvEnd(), tp.cliEnd()} {
			err := inNetns(end.ns, func() error {
				ifi, err := net.InterfaceByName(end.dev)
				if err != nil {
					return err
				}
				lfd, err := e2eBPFLink(pfd, ifi.Index, prog.attach)
				if err == nil {
					fds = append(fds, lfd)
				}
				return err
			})
			if err != nil {
				t.Fatalf("attaching the VLAN tagging program to %s in %s (tcx, kernel 6.6 or later): %v", end.dev, end.ns, err)
			}
		}
	}
	return closeAll
}

// e2eVLANPrograms are the eBPF programs that push the tags and pop them:
// r6 = ctx; per tag: r1 = r6, r2 = htons(tpid), r3 = id, call
// bpf_skb_vlan_push; or per tag: r1 = r6, call bpf_skb_vlan_pop; then r0
// = 0 (TCX_PASS), exit.
func e2eVLANPrograms(tags []e2eTag) (push, pop []byte) {
	const skbVLANPush, skbVLANPop = 18, 19
	ins := func(code, dst, src uint8, imm int32) []byte {
		b := make([]byte, 8)
		b[0], b[1] = code, dst|src<<4
		binary.LittleEndian.PutUint32(b[4:], uint32(imm))
		return b
	}
	const mov64reg, mov64imm, call, exit = 0xbf, 0xb7, 0x85, 0x95
	push = append(push, ins(mov64reg, 6, 1, 0)...)
	pop = append(pop, ins(mov64reg, 6, 1, 0)...)
	for _, tag := range tags {
		push = append(push, ins(mov64reg, 1, 6, 0)...)
		push = append(push, ins(mov64imm, 2, 0, int32(htons(tag.tpid)))...)
		push = append(push, ins(mov64imm, 3, 0, int32(tag.id))...)
		push = append(push, ins(call, 0, 0, skbVLANPush)...)
		pop = append(pop, ins(mov64reg, 1, 6, 0)...)
		pop = append(pop, ins(call, 0, 0, skbVLANPop)...)
	}
	for _, p := range []*[]byte{&push, &pop} {
		*p = append(*p, ins(mov64imm, 0, 0, 0)...)
		*p = append(*p, ins(exit, 0, 0, 0)...)
	}
	return push, pop
}

// e2eCheckTagged checks that the trunk works: a packet socket of our own
// on the server's veth sees every frame of a request and its response
// with the outer tag in its metadata (PACKET_AUXDATA) and the inner ones
// in the frame.
func e2eCheckTagged(t *testing.T, tp *topology, tags []e2eTag) {
	t.Helper()
	fd, err := packetSocket(tp.srvNS, tp.srvIf, unix.SOCK_NONBLOCK)
	if err == nil {
		defer unix.Close(fd)
		err = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1)
	}
	if err != nil {
		t.Fatalf("packet socket on %s: %v", tp.srvIf, err)
	}
	tp.curl(t, tp.cliNS, curlRequest{method: "GET", url: httpURL(tp.srv4, 80, "/hello.txt"), ua: "hl-tag-check"})
	buf, oob := make([]byte, 1<<16), make([]byte, 512)
	frames, tagged := 0, 0
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			break // EAGAIN: all read
		}
		frames++
		if why := e2eNotTagged(buf[:n], oob[:oobn], tags); why == "" {
			tagged++
		} else if frames-tagged <= 3 {
			t.Errorf("frame on %s not tagged as %v: %s, frame % x", tp.srvIf, tags, why, buf[:min(n, 24)])
		}
	}
	if frames < 6 || tagged != frames {
		t.Fatalf("%d of %d frames of a request on %s were tagged %v", tagged, frames, tp.srvIf, tags)
	}
	t.Logf("the trunk works: %d frames of a request and its response on %s, each tagged %v", frames, tp.srvIf, tags)
}

// e2eNotTagged says what is wrong with the tags of a frame read with its
// control messages oob: "" when the outermost tag is in the metadata
// (PACKET_AUXDATA) and the inner ones in the frame.
func e2eNotTagged(frame, oob []byte, tags []e2eTag) string {
	outer, inner := tags[len(tags)-1], tags[:len(tags)-1]
	msgs, _ := unix.ParseSocketControlMessage(oob)
	var status uint32
	var tci, tpid uint16
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 20 {
			status = binary.NativeEndian.Uint32(m.Data[0:])
			tci, tpid = binary.NativeEndian.Uint16(m.Data[16:]), binary.NativeEndian.Uint16(m.Data[18:])
		}
	}
	ok := status&unix.TP_STATUS_VLAN_VALID != 0 && tci&0xfff == outer.id &&
		(status&unix.TP_STATUS_VLAN_TPID_VALID == 0 || tpid == outer.tpid)
	off := 12
	for i := len(inner) - 1; i >= 0 && ok; i-- {
		ok = len(frame) >= off+4 && binary.BigEndian.Uint16(frame[off:]) == inner[i].tpid && binary.BigEndian.Uint16(frame[off+2:])&0xfff == inner[i].id
		off += 4
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("status %#x tci %d tpid %#x", status, tci, tpid)
}

// e2eBPFLoad loads a BPF_PROG_TYPE_SCHED_CLS program, returning its fd.
func e2eBPFLoad(code []byte) (int, error) {
	license := []byte("GPL\x00")
	logBuf := make([]byte, 1<<16)
	var attr [128]byte
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_SCHED_CLS)
	binary.NativeEndian.PutUint32(attr[4:], uint32(len(code)/8))
	binary.NativeEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&code[0]))))
	binary.NativeEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	binary.NativeEndian.PutUint32(attr[24:], 1) // log level
	binary.NativeEndian.PutUint32(attr[28:], uint32(len(logBuf)))
	binary.NativeEndian.PutUint64(attr[32:], uint64(uintptr(unsafe.Pointer(&logBuf[0]))))
	copy(attr[48:], "hl_vlan")
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(code)
	runtime.KeepAlive(license)
	if errno != 0 {
		return -1, fmt.Errorf("bpf(BPF_PROG_LOAD): %v\n%s", errno, bytes.TrimRight(logBuf, "\x00"))
	}
	return int(fd), nil
}

// e2eBPFLink attaches a program to an interface of the calling thread's
// network namespace as a tcx link, returning the link's fd: closing it
// detaches the program.
func e2eBPFLink(prog, ifindex int, attach uint32) (int, error) {
	var attr [64]byte
	binary.NativeEndian.PutUint32(attr[0:], uint32(prog))
	binary.NativeEndian.PutUint32(attr[4:], uint32(ifindex))
	binary.NativeEndian.PutUint32(attr[8:], attach)
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_LINK_CREATE, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	if errno != 0 {
		return -1, fmt.Errorf("bpf(BPF_LINK_CREATE): %v", errno)
	}
	return int(fd), nil
}
