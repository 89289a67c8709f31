package main

// End-to-end tests of real deployments (issue #3), as root: the httplog
// binary capturing for real in network namespaces made here, beside
// Debian's nginx, curl, wrk and tcpreplay. They reuse the helpers of
// live_test.go; docs/E2E.md draws the topologies and says what each test
// proves. Every packet stays inside the namespaces made here.
//
//   - TestE2EUpstream: a server between a client and an upstream, -i any:
//     CQ/CR for what it serves, SQ/SR for what it asks, IPv4 and IPv6.
//   - TestE2EVLAN: VLAN traffic (802.1Q sub-interfaces where the kernel has
//     them, and a VLAN trunk made with eBPF), httplog on the parent device
//     or -i any, with and without -add_vlan.
//   - TestE2EHostile: the whole capture corpus replayed with tcpreplay, and
//     hand-made hostile frames sent with a raw socket.
//   - TestE2ELoad: wrk against nginx; every request accounted for.
//   - TestE2EStopUnderLoad: SIGTERM while wrk runs; every request before
//     the signal logged.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// ---------------------------------------------------------------------------
// TestE2EUpstream

// TestE2EUpstream: three hosts, client — server — upstream, each link with
// its own IPv4 and IPv6 subnet. httplog runs on the server with -i any, so
// it reads both links and lo at once. The client's requests to the server's
// nginx are CQ/CR; the server's own requests to the upstream's nginx (curl
// run on the server) are SQ/SR; requests over the server's lo are CQ/CR,
// logged once. Once with one file a day, once with -log_split.
func TestE2EUpstream(t *testing.T) {
	t.Run("single", func(t *testing.T) { e2eUpstream(t, false) })
	t.Run("split", func(t *testing.T) { e2eUpstream(t, true) })
}

func e2eUpstream(t *testing.T, split bool) {
	tp := newLiveTopology(t)
	upNS := tp.addNamespace("up")
	srvUp := liveEnd{tp.srvNS, "hl-veth-u", fmt.Sprintf("10.201.%d.1", tp.x), "fd00:201::1"}
	up := liveEnd{upNS, "hl-veth-d", fmt.Sprintf("10.201.%d.2", tp.x), "fd00:201::2"}
	tp.addLink(srvUp, up)
	ngSrv := tp.startNginx(tp.srvNS)
	ngUp := tp.startNginx(upNS)
	dir := liveLogDir(t)
	var extra []string
	if split {
		extra = append(extra, "-log_split")
	}
	d := startHttplog(t, tp, tp.srvNS, "any", dir, extra...)

	type step struct {
		ns       string // where curl runs
		r        liveRequest
		cli, srv string // addresses curl must use
	}
	v4, v6, u4, u6 := tp.srv4, tp.srv6, up.v4, up.v6
	steps := []step{
		{tp.cliNS, liveRequest{method: "GET", url: liveURL(v4, 80, "/hello.txt"), ua: "hl-client/1"}, tp.cli4, v4},
		{tp.srvNS, liveRequest{method: "GET", url: liveURL(u4, 80, "/hello.txt"), host: "upstream.test", ua: "hl-proxy/1"}, srvUp.v4, u4},
		{tp.cliNS, liveRequest{method: "POST", url: liveURL(v4, 8080, "/api"), body: "q=1", host: "www.example.test"}, tp.cli4, v4},
		{tp.srvNS, liveRequest{method: "PUT", url: liveURL(u4, 8080, "/api?id=3"), body: "put", ua: "hl-proxy/2"}, srvUp.v4, u4},
		{tp.cliNS, liveRequest{method: "GET", url: liveURL(v6, 80, "/"), ua: "hl-client/6"}, tp.cli6, v6},
		{tp.srvNS, liveRequest{method: "GET", url: liveURL(u6, 80, "/missing"), ua: "hl-proxy/6"}, srvUp.v6, u6},            // 404
		{tp.cliNS, liveRequest{method: "HEAD", url: liveURL(v6, 8080, "/hello.txt"), host: "v6.example.test"}, tp.cli6, v6}, // HEAD: the headers of a GET, no body
		{tp.srvNS, liveRequest{method: "GET", url: liveURL(u6, 8080, "/redirect"), ua: "-"}, srvUp.v6, u6},                  // 302, no User-Agent
		{tp.srvNS, liveRequest{method: "GET", url: liveURL("127.0.0.1", 8080, "/hello.txt"), ua: "hl-lo/4"}, "127.0.0.1", "127.0.0.1"},
		{tp.srvNS, liveRequest{method: "DELETE", url: liveURL("::1", 80, "/api"), ua: "hl-lo/6"}, "::1", "::1"},
	}
	from := time.Now()
	var served, made []liveExchange
	for _, s := range steps {
		x := liveCurl(t, tp, s.ns, s.r)
		if x.client.Addr().String() != s.cli || x.server.Addr().String() != s.srv {
			t.Fatalf("curl %s in %s went %s → %s, want %s → %s", s.r.url, s.ns, liveAddr(x.client), liveAddr(x.server), s.cli, s.srv)
		}
		if s.srv == u4 || s.srv == u6 {
			made = append(made, x)
		} else {
			served = append(served, x)
		}
	}
	to := time.Now()
	stderr := stopHttplog(t, d)
	accSrv, accUp := ngSrv.stop(t), ngUp.stop(t)

	lines := readLines(t, dir)
	count := liveExpectGroups(t, lines, []liveGroup{{served, "CQ", "CR"}, {made, "SQ", "SR"}}, from, to)
	liveCheckStats(t, stderr, count)
	liveCheckAccessLog(t, accSrv, count, "CQ")
	liveCheckAccessLog(t, accUp, count, "SQ")
	e2eCheckBytes(t, dir)

	// The files: one a day, or one per type and day, all four types here.
	types := []string{""}
	if split {
		types = []string{"CQ-", "CR-", "SQ-", "SR-"}
	}
	want := map[string]bool{}
	y, m, dd := from.Date()
	for day := time.Date(y, m, dd, 0, 0, 0, 0, time.Local); !day.After(to); day = day.AddDate(0, 0, 1) {
		for _, typ := range types {
			want["http-"+typ+day.Format("20060102")+".log"] = true
		}
	}
	have := liveFileNames(t, dir)
	for name := range have {
		if !want[name] {
			t.Errorf("unexpected file %s (split: %v)", name, split)
		}
	}
	if from.Format("20060102") == to.Format("20060102") {
		for name := range want {
			if !have[name] {
				t.Errorf("no file %s (split: %v)", name, split)
			}
		}
	}
	t.Logf("%d lines: %v", len(lines), count)
}

// ---------------------------------------------------------------------------
// TestE2EVLAN

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
func e2eVLANRun(t *testing.T, tp *liveTopology, iface string, flags []string, vlanReqs, plainReqs []liveRequest, vlanTypes [2]string, check func(x liveExchange) error) int {
	t.Helper()
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, iface, dir, flags...)
	from := time.Now()
	var vlan, plain []liveExchange
	for _, r := range vlanReqs {
		x := liveCurl(t, tp, tp.cliNS, r)
		if err := check(x); err != nil {
			t.Fatalf("curl %s: %v", r.url, err)
		}
		vlan = append(vlan, x)
	}
	for _, r := range plainReqs {
		plain = append(plain, liveCurl(t, tp, tp.cliNS, r))
	}
	to := time.Now()
	stderr := stopHttplog(t, d)
	count := liveExpectGroups(t, readLines(t, dir), []liveGroup{{vlan, vlanTypes[0], vlanTypes[1]}, {plain, "CQ", "CR"}}, from, to)
	liveCheckStats(t, stderr, count)
	e2eCheckBytes(t, dir)
	return len(vlan) + len(plain)
}

func e2eVLANSubInterface(t *testing.T) {
	tp := newLiveTopology(t)
	srvV := liveEnd{tp.srvNS, tp.srvIf, fmt.Sprintf("10.202.%d.1", tp.x), "fd00:202::1"}
	cliV := liveEnd{tp.cliNS, tp.cliIf, fmt.Sprintf("10.202.%d.2", tp.x), "fd00:202::2"}
	probe := tp.srvIf + ".99"
	if out, err := exec.Command(tp.ip, "-n", tp.srvNS, "link", "add", "link", tp.srvIf, "name", probe, "type", "vlan", "id", "99").CombinedOutput(); err != nil {
		t.Skipf("this kernel makes no 802.1Q sub-interface (ip link add … type vlan: %v: %s): it lacks CONFIG_VLAN_8021Q; the trunk test covers VLAN frames on the parent", err, bytes.TrimSpace(out))
	}
	tp.run("-n", tp.srvNS, "link", "del", probe)
	tp.addVLAN(srvV, 100)
	tp.addVLAN(cliV, 100)
	ng := tp.startNginx(tp.srvNS)
	reqs := []liveRequest{
		{method: "GET", url: liveURL(srvV.v4, 80, "/hello.txt"), ua: "hl-vlan/4"},
		{method: "POST", url: liveURL(srvV.v4, 8080, "/api"), body: "vlan", host: "vlan.example.test"},
		{method: "GET", url: liveURL(srvV.v6, 80, "/"), ua: "hl-vlan/6"},
		{method: "GET", url: liveURL(srvV.v6, 8080, "/redirect")},
	}
	plain := []liveRequest{{method: "GET", url: liveURL(tp.srv4, 80, "/hello.txt"), ua: "hl-untagged/1"}}
	check := func(x liveExchange) error {
		srv, cli := x.server.Addr().String(), x.client.Addr().String()
		if !(srv == srvV.v4 && cli == cliV.v4 || srv == srvV.v6 && cli == cliV.v6) {
			return fmt.Errorf("went %s → %s, not over the VLAN", liveAddr(x.client), liveAddr(x.server))
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
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	reqs := []liveRequest{
		{method: "GET", url: liveURL(tp.srv4, 80, "/hello.txt"), ua: "hl-trunk/4"},
		{method: "POST", url: liveURL(tp.srv4, 8080, "/api"), body: "vlan", host: "vlan.example.test"},
		{method: "GET", url: liveURL(tp.srv6, 80, "/"), ua: "hl-trunk/6"},
		{method: "GET", url: liveURL(tp.srv6, 8080, "/redirect")},
	}
	ok := func(liveExchange) error { return nil }
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

// e2eTag is a VLAN tag: its TPID (0x8100 802.1Q, 0x88a8 802.1ad) and ID.
type e2eTag struct {
	tpid uint16
	id   uint16
}

// e2eTagLink makes the topology's client–server veth a VLAN trunk: on both
// ends a tcx egress program pushes the tags (innermost first, so the last
// is outermost: the kernel keeps it in the packet's metadata, as VLAN
// offload does, and moves the earlier ones into the frame), and a tcx
// ingress program pops them all before the stack sees the frame. The
// packet sockets of the device see the tagged frames, both ways. It
// returns a function that removes the programs; Cleanup does too.
func e2eTagLink(t *testing.T, tp *liveTopology, tags []e2eTag) func() {
	t.Helper()
	// eBPF: r6 = ctx; per tag: r1 = r6, r2 = htons(tpid), r3 = id, call
	// bpf_skb_vlan_push; or per tag: r1 = r6, call bpf_skb_vlan_pop; then
	// r0 = 0 (TCX_PASS), exit.
	const skbVLANPush, skbVLANPop = 18, 19
	ins := func(code, dst, src uint8, imm int32) []byte {
		b := make([]byte, 8)
		b[0], b[1] = code, dst|src<<4
		binary.LittleEndian.PutUint32(b[4:], uint32(imm))
		return b
	}
	const mov64reg, mov64imm, call, exit = 0xbf, 0xb7, 0x85, 0x95
	var push, pop []byte
	push = append(push, ins(mov64reg, 6, 1, 0)...)
	pop = append(pop, ins(mov64reg, 6, 1, 0)...)
	for _, tag := range tags {
		push = append(push, ins(mov64reg, 1, 6, 0)...)
		push = append(push, ins(mov64imm, 2, 0, int32(e2eHtons(tag.tpid)))...)
		push = append(push, ins(mov64imm, 3, 0, int32(tag.id))...)
		push = append(push, ins(call, 0, 0, skbVLANPush)...)
		pop = append(pop, ins(mov64reg, 1, 6, 0)...)
		pop = append(pop, ins(call, 0, 0, skbVLANPop)...)
	}
	for _, p := range []*[]byte{&push, &pop} {
		*p = append(*p, ins(mov64imm, 0, 0, 0)...)
		*p = append(*p, ins(exit, 0, 0, 0)...)
	}
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
		for _, end := range [][2]string{{tp.srvNS, tp.srvIf}, {tp.cliNS, tp.cliIf}} {
			err := e2eInNetns(end[0], func() error {
				ifi, err := net.InterfaceByName(end[1])
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
				t.Fatalf("attaching the VLAN tagging program to %s in %s (tcx, kernel 6.6 or later): %v", end[1], end[0], err)
			}
		}
	}
	return closeAll
}

// e2eCheckTagged checks that the trunk works: a packet socket of our own
// on the server's veth sees every frame of a request and its response
// with the outer tag in its metadata (PACKET_AUXDATA) and the inner ones
// in the frame.
func e2eCheckTagged(t *testing.T, tp *liveTopology, tags []e2eTag) {
	t.Helper()
	var fd int
	err := e2eInNetns(tp.srvNS, func() error {
		ifi, err := net.InterfaceByName(tp.srvIf)
		if err != nil {
			return err
		}
		proto := e2eHtons(unix.ETH_P_ALL)
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK, int(proto)); err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1)
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", tp.srvIf, err)
	}
	defer unix.Close(fd)
	liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv4, 80, "/hello.txt"), ua: "hl-tag-check"})
	outer, inner := tags[len(tags)-1], tags[:len(tags)-1]
	buf, oob := make([]byte, 1<<16), make([]byte, 512)
	frames, tagged := 0, 0
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			break // EAGAIN: all read
		}
		frames++
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
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
			ok = n >= off+4 && binary.BigEndian.Uint16(buf[off:]) == inner[i].tpid && binary.BigEndian.Uint16(buf[off+2:])&0xfff == inner[i].id
			off += 4
		}
		if ok {
			tagged++
		} else if frames-tagged <= 3 {
			t.Errorf("frame on %s not tagged as %v: status %#x tci %d tpid %#x, frame % x", tp.srvIf, tags, status, tci, tpid, buf[:min(n, 24)])
		}
	}
	if frames < 6 || tagged != frames {
		t.Fatalf("%d of %d frames of a request on %s were tagged %v", tagged, frames, tp.srvIf, tags)
	}
	t.Logf("the trunk works: %d frames of a request and its response on %s, each tagged %v", frames, tp.srvIf, tags)
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

// ---------------------------------------------------------------------------
// TestE2EHostile

// TestE2EHostile feeds httplog what a hostile or broken network sends: (a)
// every capture of the corpus replayed by tcpreplay into the veth, and (b)
// frames made here — random bytes, truncated and inconsistent headers,
// control bytes and invalid UTF-8 in requests, 8 KB lines — sent with a
// raw AF_PACKET socket, and odd requests made with curl. httplog must keep
// running, exit 0 on SIGTERM, write exactly the lines it should, each
// exactly one line of valid UTF-8.
func TestE2EHostile(t *testing.T) {
	t.Run("replay", e2eHostileReplay)
	t.Run("frames", e2eHostileFrames)
}

// e2eHostileReplay replays the corpus. The lines must be those that httplog
// -r gives for the frames that were sent: tcpreplay sends every frame of a
// capture as it is (whatever the capture's link type), except those the
// kernel refuses (larger than the MTU, shorter than an Ethernet header),
// which it names; so the frames sent, written to an Ethernet capture, are
// what the veth carried.
func e2eHostileReplay(t *testing.T) {
	tp := newLiveTopology(t)
	tcpreplay := liveTool(t, "tcpreplay")
	for _, end := range [][2]string{{tp.srvNS, tp.srvIf}, {tp.cliNS, tp.cliIf}} {
		tp.setMTU(end[0], end[1], 9000)
	}
	captures := corpusCaptures(t)
	dir := liveLogDir(t)
	// -local: every address is this host's, as for -r; -s: whole frames.
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-p", "any", "-s", "65535", "-b", "64", "-local", "0.0.0.0/0,::/0")

	failedRE := regexp.MustCompile(`send\(\) \[(\d+)\]`)
	failedN := regexp.MustCompile(`Failed packets:\s+(\d+)`)
	var sent [][]byte
	replayed, failedFrames := 0, 0
	refused := map[string]string{}
	start := time.Now()
	// tcpreplay spends most of its ~65 ms setting up and tearing down its
	// socket (the kernel waits for RCU grace periods), so a few run at once.
	type result struct {
		out []byte
		err error
	}
	results := make([]result, len(captures))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 6)
	for i, capture := range captures {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out, err := tp.exec(tp.cliNS, tcpreplay, "-i", tp.cliIf, "--topspeed", capture)
			results[i] = result{out, err}
		}()
	}
	wg.Wait()
	for i, capture := range captures {
		name, _ := filepath.Rel(filepath.Join(corpusDir(t), "pcaps"), capture)
		out, err := results[i].out, results[i].err
		if err != nil {
			why := strings.TrimSpace(string(out))
			for _, l := range strings.Split(why, "\n") {
				if strings.Contains(l, "Unable") {
					why = strings.TrimSpace(l)
					break
				}
			}
			refused[name] = fmt.Sprintf("%v: %s", err, why)
			continue
		}
		failed := map[int]bool{}
		for _, m := range failedRE.FindAllStringSubmatch(string(out), -1) {
			n, _ := strconv.Atoi(m[1])
			failed[n] = true
		}
		if m := failedN.FindStringSubmatch(string(out)); m != nil && m[1] != strconv.Itoa(len(failed)) {
			t.Fatalf("tcpreplay %s: %s failed packets, %d named:\n%s", name, m[1], len(failed), out)
		}
		failedFrames += len(failed)
		for i, f := range e2eReadCapture(t, capture) {
			if !failed[i+1] { // tcpreplay numbers packets from 1
				sent = append(sent, f)
			}
		}
		replayed++
	}
	t.Logf("replayed %d of %d captures (%d frames sent, %d refused by the kernel, in %v); tcpreplay refused %d:",
		replayed, len(captures), len(sent), failedFrames, time.Since(start).Round(time.Millisecond), len(refused))
	for _, name := range slices.Sorted(maps.Keys(refused)) {
		t.Logf("  %s: %s", name, refused[name])
	}
	if replayed < 150 {
		t.Errorf("only %d captures replayed", replayed)
	}

	time.Sleep(300 * time.Millisecond) // the last block leaves the ring
	_, stats, lines, got := e2eStopAndRead(t, d, dir)
	// What httplog -r makes of the same frames.
	pcap := writePcap(t, layers.LinkTypeEthernet, sent, time.Now())
	cmd := exec.Command(liveBinary(t), "-r", pcap, "-p", "any", "-d", "-")
	cmd.Env = liveEnv()
	var rerr bytes.Buffer
	cmd.Stderr = &rerr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("httplog -r: %v\n%s", err, rerr.String())
	}
	want := map[string]int{}
	wantN := 0
	for _, l := range strings.SplitAfter(string(out), "\n") {
		if l == "" {
			continue
		}
		ll, ok := liveParseLine(t, "httplog -r", strings.TrimSuffix(l, "\n"))
		if ok {
			want[ll.rest]++
			wantN++
		}
	}
	missing, extra := e2eDiff(want, got)
	shortfall := wantN - len(lines)
	t.Logf("%d lines live (CQ %d, CR %d), %d from httplog -r; kernel_drops=%d left_in_ring=%d malformed=%d fragments=%d",
		len(lines), stats["CQ"], stats["CR"], wantN, stats["kernel_drops"], stats["left_in_ring"], stats["malformed"], stats["fragments"])
	if len(extra) > 0 {
		t.Errorf("%d lines that httplog -r does not write:\n%s", len(extra), strings.Join(extra, "\n"))
	}
	// A veth loses nothing at this volume; a frame the ring had no room
	// for is counted, and may have been an HTTP start.
	if lost := stats["kernel_drops"] + stats["left_in_ring"]; (lost == 0 && len(missing) > 0) || uint64(max(shortfall, 0)) > lost {
		t.Errorf("%d lines of httplog -r missing (kernel_drops+left_in_ring=%d):\n%s", len(missing), lost, strings.Join(missing, "\n"))
	}
	if stats["lines_lost"] != 0 || stats["write_errors"] != 0 {
		t.Errorf("lines lost: %v", stats)
	}
}

// e2eHostileFrames sends hand-made frames and curl requests.
func e2eHostileFrames(t *testing.T) {
	tp := newLiveTopology(t)
	for _, end := range [][2]string{{tp.srvNS, tp.srvIf}, {tp.cliNS, tp.cliIf}} {
		tp.setMTU(end[0], end[1], 9000) // room for the 8 KB lines in one frame
	}
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-p", "any", "-s", "65535", "-b", "64")

	frames := e2eFrames(tp)
	raw := make([][]byte, len(frames))
	for i, f := range frames {
		raw[i] = f.data
	}
	from := time.Now()
	errs, err := e2eSend(tp.cliNS, tp.cliIf, raw)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	source := map[string]string{} // expected line → the frame that makes it
	refusedShort, starts := 0, 0
	for i, f := range frames {
		switch {
		case errs[i] == nil:
		case len(f.data) < 14 && errors.Is(errs[i], unix.EINVAL):
			refusedShort++ // the kernel sends no frame shorter than its header
			continue
		default:
			t.Errorf("sending frame %q (%d bytes): %v", f.name, len(f.data), errs[i])
			continue
		}
		for _, w := range f.want {
			want[w]++
			source[w] = f.name
			starts++
		}
	}

	// Odd requests that curl accepts, to nginx (which answers or refuses).
	odd := []liveRequest{
		{method: "GET", url: liveURL(tp.srv4, 80, "/a/../b/./c/%2e%2e/"), args: []string{"--path-as-is"}, ua: "hl-odd/1"},
		{method: "GET", url: liveURL(tp.srv4, 80, "/p\\q\"r<s>t{u}v|w^x`y"), args: []string{"--path-as-is"}, target: "/p\\q\"r<s>t{u}v|w^x`y"},
		{method: "GET", url: liveURL(tp.srv4, 8080, "/\xff\xe2\x82\xc3\xa9"), args: []string{"--path-as-is"}, target: "/%ff%e2%82%c3%a9"}, // curl escapes bytes ≥ 0x80
		{method: "GET", url: liveURL(tp.srv6, 80, "/x?q=a'b&c=[]&d=%00"), args: []string{"--path-as-is"}, ua: "ua\x1b[1m\x7f\\\xff\xe2\x82 end\x01"},
		{method: "OPTIONS", url: liveURL(tp.srv4, 80, "/api"), ua: "日本語 \xf0\x9f\x98\x80 \xc0\xaf \xed\xa0\x80"},
		{method: "GET", url: liveURL(tp.srv4, 80, "/hello.txt"), host: "h\x02st\\name.test"},
	}
	var xs []liveExchange
	for _, r := range odd {
		xs = append(xs, liveCurl(t, tp, tp.cliNS, r))
	}
	to := time.Now()
	time.Sleep(200 * time.Millisecond)
	stderr, stats, lines, got := e2eStopAndRead(t, d, dir)
	access := ng.stop(t)
	for _, l := range lines {
		if l.ts.Before(from.Add(-time.Second)) || l.ts.After(to.Add(time.Second)) {
			t.Errorf("timestamp %s outside the run: %s", l.ts.Format(time.StampMilli), l.rest)
		}
	}
	for _, x := range xs {
		for _, l := range []string{x.requestText("CQ"), x.responseText("CR")} {
			want[l]++
			source[l] = "curl " + x.req.method + " " + x.req.url
		}
	}
	for l, n := range want {
		if got[l] < n {
			t.Errorf("frame %q: no line %s", source[l], e2eShort(l))
		}
	}
	if _, extra := e2eDiff(want, got); len(extra) > 0 {
		t.Errorf("%d lines not expected:\n%s", len(extra), strings.Join(extra, "\n"))
	}
	if t.Failed() || testing.Verbose() {
		var all []string
		for _, l := range lines {
			all = append(all, e2eShort(l.rest))
		}
		t.Logf("the lines written:\n%s", strings.Join(all, "\n"))
	}
	t.Logf("%d frames (%d refused by the kernel as shorter than an Ethernet header), %d HTTP starts among them, %d curl requests; %d lines; stats: malformed=%d fragments=%d not_http=%d packets=%d",
		len(frames), refusedShort, starts, len(xs), len(lines), stats["malformed"], stats["fragments"], stats["not_http"], stats["packets"])
	for _, k := range []string{"malformed", "fragments", "not_http"} {
		if stats[k] == 0 {
			t.Errorf("stats: %s=0 after the broken frames: %s", k, lastStatsLine(stderr))
		}
	}
	for _, k := range []string{"kernel_drops", "lines_lost", "write_errors", "SQ", "SR"} {
		if stats[k] != 0 {
			t.Errorf("stats: %s=%d, want 0: %s", k, stats[k], lastStatsLine(stderr))
		}
	}
	if int(stats["CQ"]+stats["CR"]) != len(lines) {
		t.Errorf("stats count CQ+CR=%d, the files hold %d lines", stats["CQ"]+stats["CR"], len(lines))
	}

	// What nginx received is what the expected lines say curl sent.
	byPort := map[uint16]liveAccess{}
	for _, l := range access {
		a, ok := liveParseAccess(l)
		if !ok {
			t.Errorf("access log line not in the test's format: %q", l)
			continue
		}
		byPort[a.client.Port()] = a
	}
	for _, x := range xs {
		a, ok := byPort[x.client.Port()]
		switch {
		case !ok:
			t.Errorf("nginx did not log %s %s (client %s)", x.req.method, x.req.url, liveAddr(x.client))
		case a.request != x.requestLine:
			t.Errorf("nginx received the request line %q, the test expects curl to send %q", a.request, x.requestLine)
		case a.status != 400 && x.ua != "-" && a.ua != x.ua: // on a bad Host nginx stops reading headers
			t.Errorf("nginx received User-Agent %q, the test expects %q", a.ua, x.ua)
		}
	}
}

// e2eFrame is a frame to send and the lines (after the timestamp) it must
// make.
type e2eFrame struct {
	name string
	data []byte
	want []string
}

// e2eFrames makes the hostile frames, client → server on the topology's
// addresses (so requests are CQ and responses CR), to a made-up
// destination MAC so that the server's stack ignores them. Expected lines
// are written out by hand, from the spec's escaping rules (§2).
func e2eFrames(tp *liveTopology) []e2eFrame {
	c4, s4, c6, s6 := tp.cli4, tp.srv4, tp.cli6, tp.srv6
	var fs []e2eFrame
	port := uint16(40000)
	next := func() uint16 { port++; return port }
	add := func(name string, data []byte, want ...string) { fs = append(fs, e2eFrame{name, data, want}) }
	cq := func(src, dst string, sport uint16, msg string) string {
		return fmt.Sprintf("%s %s CQ %s", liveAddr(netip.AddrPortFrom(netip.MustParseAddr(src), sport)),
			liveAddr(netip.AddrPortFrom(netip.MustParseAddr(dst), 80)), msg)
	}
	cr := func(src, dst string, dport uint16, msg string) string {
		return fmt.Sprintf("%s %s CR %s", liveAddr(netip.AddrPortFrom(netip.MustParseAddr(src), 80)),
			liveAddr(netip.AddrPortFrom(netip.MustParseAddr(dst), dport)), msg)
	}
	req4 := func(name, payload, msg string) {
		p := next()
		var want []string
		if msg != "" {
			want = append(want, cq(c4, s4, p, msg))
		}
		add(name, ipv4HTTP(c4, s4, p, 80, payload), want...)
	}
	resp4 := func(name, payload, msg string) {
		p := next()
		var want []string
		if msg != "" {
			want = append(want, cr(s4, c4, p, msg))
		}
		add(name, ipv4HTTP(s4, c4, 80, p, payload), want...)
	}

	// Control bytes, backslashes and invalid UTF-8 in every field.
	req4("control bytes and invalid UTF-8",
		"GET /a\x00b\x01c\x1b[31mred\x7f\\d\xffe\xe2\x82 HTTP/1.1\r\nHost: h\x00st\x1b\r\nUser-Agent: ua\\\xc3\xa9\xc3\r\n\r\n",
		`GET /a\x00b\x01c\x1b[31mred\x7f\\d\xffe\xe2\x82 HTTP/1.1 h\x00st\x1b ua\\é\xc3`)
	req4("valid UTF-8 is kept",
		"GET /日本語/é?q=ü HTTP/1.1\r\nHost: bücher.test\r\nUser-Agent: Mozilla/5.0 (ж)\r\n\r\n",
		"GET /日本語/é?q=ü HTTP/1.1 bücher.test Mozilla/5.0 (ж)")
	req4("overlong, surrogate, beyond U+10FFFF",
		"GET /\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xf0\x9f\x98\x80 HTTP/1.1\r\n\r\n",
		`GET /\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80😀 HTTP/1.1 - -`)
	req4("a lone CR ends the request line",
		"GET /cr\rinjected: x HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /cr a -")
	req4("LF line ends",
		"GET /lf HTTP/1.0\nHost: lf.test\nUser-Agent: lf/1\n\n",
		"GET /lf HTTP/1.0 lf.test lf/1")
	req4("terminal escape sequences in the User-Agent",
		"GET /esc HTTP/1.1\r\nHost: esc\r\nUser-Agent: a\x1b]0;title\x07\x1b[2J\x08\x08\r\n\r\n",
		`GET /esc HTTP/1.1 esc a\x1b]0;title\x07\x1b[2J\x08\x08`)
	req4("a forged log line in a header",
		"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: evil\r\n2019-09-01 00:00:00.000 1.2.3.4#1 5.6.7.8#80 CQ GET /fake HTTP/1.1 - -\r\n\r\n",
		"GET /x HTTP/1.1 a evil")
	req4("header names in any case, values trimmed, first wins, empty is -",
		"POST /h HTTP/1.1\r\nhOsT: \t first \t\r\nHOST: second\r\nuser-agent:\t \r\nUser-Agent: late\r\n\r\n",
		"POST /h HTTP/1.1 first -")
	req4("headers after the empty line are body",
		"PUT /b HTTP/1.1\r\nX: y\r\n\r\nHost: body\r\nUser-Agent: body\r\n",
		"PUT /b HTTP/1.1 - -")
	req4("trailing spaces of the request line are kept",
		"DELETE /t HTTP/1.1  \r\nHost: t\r\n\r\n",
		"DELETE /t HTTP/1.1   t -")
	req4("the method alone", "GET ", "GET  - -")
	for _, m := range []string{"OPTIONS * HTTP/1.1", "TRACE / HTTP/1.1", "PATCH /p HTTP/1.1", "CONNECT example.test:443 HTTP/1.1", "HEAD / HTTP/1.0"} {
		req4(m, m+"\r\nHost: m.test\r\nUser-Agent: m\r\n\r\n", m+" m.test m")
	}
	for _, p := range []string{"get / HTTP/1.1\r\n\r\n", "PROPFIND / HTTP/1.1\r\n\r\n", "GET", "GETS / HTTP/1.1\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\n\r\n", " GET / HTTP/1.1\r\n\r\n", "HTTP", "Http/1.1 200 OK\r\n\r\n", "\x00GET / HTTP/1.1"} {
		req4(fmt.Sprintf("not an HTTP start: %q", p), p, "")
	}
	resp4("a response with control bytes",
		"HTTP/1.1 200 \x1bOK\xff\r\nContent-Length: 1\x002\r\nContent-Type: text/html;\\\"x\x7f\r\n\r\n",
		`HTTP/1.1 200 \x1bOK\xff 1\x002 text/html;\\"x\x7f`)
	resp4("a response with LF line ends", "HTTP/1.0 404 Not Found\nContent-Type: text/plain\n\n", "HTTP/1.0 404 Not Found - text/plain")
	resp4("HTTP/ alone", "HTTP/", "HTTP/ - -")

	// 8 KB lines, sent whole (MTU 9000) and captured whole (-s 65535).
	long := strings.Repeat("a", 8000)
	req4("an 8 KB request line", "GET /"+long+" HTTP/1.1\r\nHost: big\r\n\r\n", "GET /"+long+" HTTP/1.1 big -")
	ua := strings.Repeat("U", 8192)
	req4("an 8 KB User-Agent", "GET /bigua HTTP/1.1\r\nHost: big\r\nUser-Agent: "+ua+"\r\n\r\n", "GET /bigua HTTP/1.1 big "+ua)
	esc := strings.Repeat("\x1b\\", 2000)
	req4("an 8 KB header of escapes", "GET /bigesc HTTP/1.1\r\nUser-Agent: "+esc+"\r\nHost: e\r\n\r\n",
		"GET /bigesc HTTP/1.1 e "+strings.Repeat(`\x1b\\`, 2000))

	// IPv6.
	p := next()
	add("IPv6 request with control bytes", ipv6HTTP(c6, s6, p, 80, "GET /v6\x00 HTTP/1.1\r\nHost: [fd00:200::1]\r\nUser-Agent: v6\xfe\r\n\r\n"),
		cq(c6, s6, p, `GET /v6\x00 HTTP/1.1 [fd00:200::1] v6\xfe`))
	p = next()
	add("IPv6 response", ipv6HTTP(s6, c6, 80, p, "HTTP/1.1 301 Moved\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n"),
		cr(s6, c6, p, "HTTP/1.1 301 Moved 0 text/html"))
	hbh := func() []byte { return []byte{0, 0, 1, 4, 0, 0, 0, 0} } // hop-by-hop or destination options: PadN
	frag := func(off uint16, more bool) []byte {
		b := make([]byte, 8)
		v := off << 3
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(b[2:], v)
		binary.BigEndian.PutUint32(b[4:], 0x1234)
		return b
	}
	p = next()
	add("IPv6 hop-by-hop, destination options, then TCP",
		ether(etherIPv6, nil, ipv6Packet(c6, s6, 6, [][]byte{hbh(), hbh()}, []byte{ip6HopByHop, ip6DestOpts}, tcpSegment(p, 80, 20, "GET /ext HTTP/1.1\r\n\r\n"))),
		cq(c6, s6, p, "GET /ext HTTP/1.1 - -"))
	p = next()
	add("IPv6 first fragment",
		ether(etherIPv6, nil, ipv6Packet(c6, s6, 6, [][]byte{frag(0, true)}, []byte{ip6Fragment}, tcpSegment(p, 80, 20, "GET /frag0 HTTP/1.1\r\nHost: f"))),
		cq(c6, s6, p, "GET /frag0 HTTP/1.1 f -"))
	add("IPv6 later fragment",
		ether(etherIPv6, nil, ipv6Packet(c6, s6, 6, [][]byte{frag(8, false)}, []byte{ip6Fragment}, tcpSegment(next(), 80, 20, "GET /frag8 HTTP/1.1\r\n\r\n"))))
	long6 := ether(etherIPv6, nil, ipv6Packet(c6, s6, 6, [][]byte{hbh()}, []byte{ip6HopByHop}, tcpSegment(next(), 80, 20, "GET /x HTTP/1.1\r\n\r\n")))
	long6[14+40+1] = 200 // the extension header runs past the end
	add("IPv6 extension header longer than the packet", long6)
	p = next()
	zero6 := ipv6HTTP(c6, s6, p, 80, "GET /jumbo HTTP/1.1\r\n\r\n")
	binary.BigEndian.PutUint16(zero6[14+4:], 0) // payload length 0: the captured bytes
	add("IPv6 payload length 0", zero6, cq(c6, s6, p, "GET /jumbo HTTP/1.1 - -"))
	p = next()
	pad6 := append(ipv6HTTP(c6, s6, p, 80, "GET /v6pad"), " HTTP/1.1\r\nHost: padding\r\n\r\n"...)
	add("IPv6 padding after the payload length", pad6, cq(c6, s6, p, "GET /v6pad - -"))
	add("IPv6 header cut", ipv6HTTP(c6, s6, next(), 80, "GET / HTTP/1.1\r\n\r\n")[:14+30])

	// VLAN tags: the receiving veth takes the outer 802.1Q or 802.1ad tag
	// into the packet's metadata; the rest stay in the frame.
	for _, tags := range [][]uint16{{etherVLAN}, {etherQinQ, etherVLAN}, {etherQinQv1, etherVLAN}, {etherQinQ, etherVLAN, etherVLAN}, {etherQinQ, etherVLAN, etherVLAN, etherVLAN}} {
		p := next()
		add(fmt.Sprintf("VLAN tags %x", tags), ether(etherIPv4, tags, ipv4Packet(c4, s4, 6, 20, 0, tcpSegment(p, 80, 20, "GET /vlan HTTP/1.1\r\n\r\n"))),
			cq(c4, s4, p, "GET /vlan HTTP/1.1 - -"))
	}

	// IP and TCP options and their lengths.
	p = next()
	add("IPv4 options (IHL 15), TCP options (data offset 15)",
		ether(etherIPv4, nil, ipv4Packet(c4, s4, 6, 60, 0, tcpSegment(p, 80, 60, "GET /opts HTTP/1.1\r\n\r\n"))),
		cq(c4, s4, p, "GET /opts HTTP/1.1 - -"))
	for ihl := 0; ihl < 5; ihl++ {
		f := ipv4HTTP(c4, s4, next(), 80, "GET /ihl HTTP/1.1\r\n\r\n")
		f[14] = 0x40 | byte(ihl)
		add(fmt.Sprintf("IPv4 IHL %d", ihl), f)
	}
	f := ipv4HTTP(c4, s4, next(), 80, "GET /ihl15 HTTP")
	f[14] = 0x4f // 60 bytes of header, 36 there
	add("IPv4 IHL 15 beyond the packet", f)
	for doff := 0; doff < 5; doff++ {
		f := ipv4HTTP(c4, s4, next(), 80, "GET /doff HTTP/1.1\r\n\r\n")
		f[14+20+12] = byte(doff) << 4
		add(fmt.Sprintf("TCP data offset %d", doff), f)
	}
	f = ipv4HTTP(c4, s4, next(), 80, "GET /d")
	f[14+20+12] = 0xf0
	add("TCP data offset 15 beyond the segment", f)
	setLen := func(f []byte, n int) []byte { binary.BigEndian.PutUint16(f[14+2:], uint16(n)); return f }
	p = next()
	add("IPv4 total length 0 (segmentation offload)", setLen(ipv4HTTP(c4, s4, p, 80, "GET /tso HTTP/1.1\r\n\r\n"), 0), cq(c4, s4, p, "GET /tso HTTP/1.1 - -"))
	p = next()
	add("IPv4 total length beyond the frame", setLen(ipv4HTTP(c4, s4, p, 80, "GET /short HTTP/1.1\r\nHost: s\r\n\r\n"), 4000), cq(c4, s4, p, "GET /short HTTP/1.1 s -"))
	p = next()
	add("IPv4 total length cuts the payload", setLen(ipv4HTTP(c4, s4, p, 80, "GET /cut HTTP/1.1\r\nHost: a\r\n\r\n"), 20+20+7), cq(c4, s4, p, "GET /cu - -"))
	p = next()
	add("Ethernet padding after the IPv4 total length", append(ipv4HTTP(c4, s4, p, 80, "GET /pad"), " HTTP/1.1\r\nHost: padding\r\n\r\n"...), cq(c4, s4, p, "GET /pad - -"))
	add("IPv4 total length shorter than the header", setLen(ipv4HTTP(c4, s4, next(), 80, "GET / HTTP/1.1\r\n\r\n"), 10))
	add("IPv4 total length cuts the TCP header", setLen(ipv4HTTP(c4, s4, next(), 80, "GET / HTTP/1.1\r\n\r\n"), 30))
	add("IPv4 later fragment", ether(etherIPv4, nil, ipv4Packet(c4, s4, 6, 20, 185, tcpSegment(next(), 80, 20, "GET /frag HTTP/1.1\r\n\r\n"))))
	add("UDP to port 80", ether(etherIPv4, nil, ipv4Packet(c4, s4, 17, 20, 0, tcpSegment(next(), 80, 20, "GET /udp HTTP/1.1\r\n\r\n"))))
	add("IPv4 version 5", func() []byte { f := ipv4HTTP(c4, s4, next(), 80, "GET / HTTP/1.1\r\n\r\n"); f[14] = 0x55; return f }())

	// One request cut at every length up to its first bytes of payload,
	// then at a few places in its headers.
	p = next()
	full := ipv4HTTP(c4, s4, p, 80, "GET /trunc HTTP/1.1\r\nHost: example.test\r\nUser-Agent: trunc/1\r\n\r\n")
	const hdr = 14 + 20 + 20
	for n := 0; n < hdr+4; n++ {
		add(fmt.Sprintf("request cut at %d bytes", n), slices.Clone(full[:n]))
	}
	for _, c := range []struct {
		n   int
		msg string
	}{
		{4, "GET  - -"},
		{7, "GET /tr - -"},
		{len("GET /trunc HTTP/1.1\r"), "GET /trunc HTTP/1.1 - -"},
		{len("GET /trunc HTTP/1.1\r\nHost: exa"), "GET /trunc HTTP/1.1 exa -"},
		{len("GET /trunc HTTP/1.1\r\nHost: example.test\r\nUser-Agent: tr"), "GET /trunc HTTP/1.1 example.test tr"},
		{len(full) - hdr, "GET /trunc HTTP/1.1 example.test trunc/1"},
	} {
		add(fmt.Sprintf("request cut after %d bytes of payload", c.n), slices.Clone(full[:hdr+c.n]), cq(c4, s4, p, c.msg))
	}

	// Random bytes, and random bytes behind valid Ethernet and IPv4
	// headers (TCP header and payload garbage), from a fixed seed.
	rng := rand.New(rand.NewPCG(3, 2019))
	for i := 0; i < 200; i++ {
		b := make([]byte, rng.IntN(1515))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		add(fmt.Sprintf("random %d", i), b)
	}
	for i := 0; i < 200; i++ {
		seg := make([]byte, rng.IntN(120))
		for j := range seg {
			seg[j] = byte(rng.Uint32())
		}
		if len(seg) > 13 {
			seg[13] &^= 0x02 // no SYN: a random segment must not open a connection
		}
		if i%2 == 0 && len(seg) >= 4 {
			binary.BigEndian.PutUint16(seg[2:], 80)
		}
		add(fmt.Sprintf("random TCP %d", i), ether(etherIPv4, nil, ipv4Packet(c4, s4, 6, 20, 0, seg)))
	}
	return fs
}

// e2eSend writes each frame to a raw AF_PACKET socket bound to dev in
// namespace ns, and returns the error of each write.
func e2eSend(ns, dev string, frames [][]byte) ([]error, error) {
	errs := make([]error, len(frames))
	err := e2eInNetns(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := e2eHtons(unix.ETH_P_ALL)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(proto))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %v", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind to %s: %v", dev, err)
		}
		for i, f := range frames {
			n, err := unix.Write(fd, f)
			if err == nil && n != len(f) {
				err = fmt.Errorf("wrote %d of %d bytes", n, len(f))
			}
			errs[i] = err
		}
		return nil
	})
	return errs, err
}

// e2eInNetns runs fn on an OS thread of its own moved into network
// namespace ns: sockets made there belong to ns. The thread is moved back
// before the result is reported (so that no thread of the test is left in
// ns when it is deleted); if that fails it stays locked and ends with its
// goroutine, so no other goroutine ever runs in ns.
func e2eInNetns(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			done <- err
			return
		}
		defer home.Close()
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %v", ns, err)
			return
		}
		result := fn()
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- result
	}()
	return <-done
}

func e2eHtons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// ---------------------------------------------------------------------------
// TestE2ELoad

// TestE2ELoad: wrk (2 threads, 32 connections, 10 s) against nginx while
// httplog -cpu 2 captures on the server's veth. Every request nginx logged
// is a CQ line and every response a CR line, or is counted as lost
// (kernel_drops, left_in_ring); a line beyond nginx's count can only be a
// retransmission the kernel counted. httplog's peak memory stays bounded.
func TestE2ELoad(t *testing.T) {
	tp := newLiveTopology(t)
	wrk := liveTool(t, "wrk")
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-cpu", "2")
	e2eLogLoad(t)

	retrans := e2eRetrans(t, tp)
	url := liveURL(tp.srv4, 80, "/small")
	w := tp.start("wrk", tp.cliNS, wrk, "-t2", "-c32", "-d10s", url)
	if !w.wait(30 * time.Second) {
		t.Fatalf("wrk still runs after 30 s")
	}
	if w.err != nil {
		t.Fatalf("wrk: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	t.Logf("wrk -t2 -c32 -d10s %s:\n%s", url, w.stdout.String())
	retrans = e2eRetrans(t, tp) - retrans
	time.Sleep(300 * time.Millisecond) // the ring's last block, the writer's tick
	hwm := e2eVmHWM(t, d.cmd.Process.Pid)
	stderr := stopHttplog(t, d)
	access := ng.stop(t)
	stats := parseStats(t, stderr)
	checkStatsAddUp(t, stderr)

	// Half a million lines: readLines would take a minute under -race, so
	// each line is checked against the two texts it may have, byte by byte.
	count := e2eScanLoad(t, dir,
		[2]string{tp.cli4 + "#", " " + tp.srv4 + "#80 CQ GET /small HTTP/1.1 " + tp.srv4 + " -"},
		[2]string{tp.srv4 + "#80 " + tp.cli4 + "#", " CR HTTP/1.1 200 OK 6 text/plain"})
	responses := 0
	for i, l := range access {
		if i%1000 == 0 { // a sample in full
			if a, ok := liveParseAccess(l); !ok || a.request != "GET /small HTTP/1.1" {
				t.Errorf("access log line %q", l)
			}
		}
		if strings.Contains(l, `HTTP/1.1" 200 `) {
			responses++
		}
	}
	lost := stats["kernel_drops"] + stats["left_in_ring"]
	t.Logf("nginx: %d requests, %d responses 200; httplog: CQ %d, CR %d; kernel_drops=%d left_in_ring=%d kernel_freezes=%d; TCP retransmissions %d; packets=%d",
		len(access), responses, count["CQ"], count["CR"], stats["kernel_drops"], stats["left_in_ring"], stats["kernel_freezes"], retrans, stats["packets"])
	t.Logf("httplog peak resident memory (VmHWM): %.1f MB (binary built with -race: %v)", float64(hwm)/(1<<20), liveRace())
	if len(access) < 1000 {
		t.Errorf("only %d requests: no load", len(access))
	}
	e2eAccount(t, "CQ", count["CQ"], len(access), lost, retrans)
	e2eAccount(t, "CR", count["CR"], responses, lost, retrans)
	for _, typ := range []string{"CQ", "CR"} {
		if stats[typ] != uint64(count[typ]) {
			t.Errorf("stats: %s=%d, the files hold %d", typ, stats[typ], count[typ])
		}
	}
	if stats["lines_lost"] != 0 || stats["write_errors"] != 0 {
		t.Errorf("lines lost on writing: %s", lastStatsLine(stderr))
	}
	if limit := uint64(200 << 20); hwm > limit {
		t.Errorf("httplog peak resident memory %d MB, want below %d MB", hwm>>20, limit>>20)
	}
}

// e2eScanLoad checks the files of a load test quickly: names, modes, no
// partial line, and every line DATE TIME then q[0] PORT q[1] (CQ) or r[0]
// PORT r[1] (CR), with a timestamp of the file's day. It returns the lines
// of each type.
func e2eScanLoad(t *testing.T, dir string, q, r [2]string) map[string]int {
	t.Helper()
	count := map[string]int{}
	bad := 0
	for name := range liveFileNames(t, dir) {
		m := liveFileRE.FindStringSubmatch(name)
		if m == nil {
			t.Errorf("unexpected file %s", name)
			continue
		}
		path := filepath.Join(dir, name)
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %v, %v; want 0640", name, st.Mode().Perm(), err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends in a partial line", name)
		}
		day := m[2][:4] + "-" + m[2][4:6] + "-" + m[2][6:] + " "
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				break
			}
			line := string(b[:i])
			b = b[i+1:]
			typ := ""
			if len(line) > 24 && strings.HasPrefix(line, day) && e2eTimeOK(line[11:23]) && line[23] == ' ' {
				switch rest := line[24:]; {
				case e2eForm(rest, q):
					typ = "CQ"
				case e2eForm(rest, r):
					typ = "CR"
				}
			}
			if typ == "" {
				if bad++; bad <= 5 {
					t.Errorf("%s: unexpected line %q", name, line)
				}
				continue
			}
			count[typ]++
		}
	}
	if bad > 5 {
		t.Errorf("%d unexpected lines in all", bad)
	}
	return count
}

// e2eTimeOK checks HH:MM:SS.mmm.
func e2eTimeOK(s string) bool {
	for i, c := range []byte(s) {
		if i == 2 || i == 5 {
			if c != ':' {
				return false
			}
		} else if i == 8 {
			if c != '.' {
				return false
			}
		} else if c < '0' || c > '9' {
			return false
		}
	}
	return len(s) == 12
}

// e2eForm checks that s is f[0], a port number, f[1].
func e2eForm(s string, f [2]string) bool {
	port, ok := strings.CutPrefix(s, f[0])
	if !ok {
		return false
	}
	port, ok = strings.CutSuffix(port, f[1])
	if !ok {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0 && strconv.FormatUint(n, 10) == port
}

// e2eAccount checks one type's lines against what nginx logged: a
// shortfall must be covered by the frames httplog counted as lost, an
// excess by TCP retransmissions (each copy of a packet is logged).
func e2eAccount(t *testing.T, typ string, lines, nginx int, lost, retrans uint64) {
	t.Helper()
	switch {
	case lines < nginx && uint64(nginx-lines) > lost:
		t.Errorf("%d %s lines for %d requests nginx logged: %d missing, only %d counted as lost (kernel_drops+left_in_ring)", lines, typ, nginx, nginx-lines, lost)
	case lines > nginx && uint64(lines-nginx) > retrans:
		t.Errorf("%d %s lines for %d requests nginx logged: %d too many, and only %d TCP retransmissions", lines, typ, nginx, lines-nginx, retrans)
	case lost == 0 && retrans == 0 && lines != nginx:
		t.Errorf("%d %s lines for %d requests nginx logged, with nothing lost or retransmitted", lines, typ, nginx)
	}
}

// ---------------------------------------------------------------------------
// TestE2EStopUnderLoad

// TestE2EStopUnderLoad: SIGTERM while wrk is still sending a moderate load
// (4 connections, a 2 ms pause between requests). httplog exits 0 within
// the stop timeout, leaves no partial line, writes no line for a request
// nginx did not see, and logs every request (and response) nginx logged
// before the signal: frames captured before SIGTERM are drained.
func TestE2EStopUnderLoad(t *testing.T) {
	tp := newLiveTopology(t)
	wrk := liveTool(t, "wrk")
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-cpu", "2")
	script := filepath.Join(t.TempDir(), "pace.lua")
	liveWrite(t, script, "-- a pause between the requests of a connection, in ms\nfunction delay()\n\treturn 2\nend\n")

	url := liveURL(tp.srv4, 80, "/small")
	w := tp.start("wrk", tp.cliNS, wrk, "-t1", "-c4", "-d5s", "-s", script, url)
	time.Sleep(2 * time.Second)
	if w.exited() {
		t.Fatalf("wrk ended early: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	sig := time.Now()
	stderr := stopHttplog(t, d)
	exit := time.Now()
	if !w.wait(15 * time.Second) {
		t.Fatalf("wrk still runs")
	}
	if w.err != nil {
		t.Fatalf("wrk: %v\n%s%s", w.err, w.stdout.String(), w.stderr.String())
	}
	access := ng.stop(t)
	stats := parseStats(t, stderr)
	checkStatsAddUp(t, stderr)
	lines := readLines(t, dir)

	// Per connection (client port): the requests nginx logged, the lines.
	type conn struct {
		all, before, after int // requests logged; before the signal (50 ms margin); after httplog's exit
		cq, cr             int
	}
	conns := map[uint16]*conn{}
	get := func(p uint16) *conn {
		if conns[p] == nil {
			conns[p] = &conn{}
		}
		return conns[p]
	}
	for _, l := range access {
		a, ok := liveParseAccess(l)
		if !ok {
			t.Fatalf("access log line not in the test's format: %q", l)
		}
		c := get(a.client.Port())
		c.all++
		if a.at.Before(sig.Add(-50 * time.Millisecond)) {
			c.before++
		}
		if a.at.After(exit) {
			c.after++
		}
	}
	for _, l := range lines {
		ap, err := netip.ParseAddrPort(strings.Replace(e2eEndpoint(l, l.typ == "CR"), "#", ":", 1))
		if err != nil {
			t.Fatalf("line %q: %v", l.rest, err)
		}
		c := get(ap.Port())
		if l.typ == "CQ" {
			c.cq++
		} else {
			c.cr++
		}
		if l.ts.After(exit) {
			t.Errorf("line captured after httplog exited: %s %s", l.ts.Format(time.StampMilli), l.rest)
		}
	}
	var before, after, shortQ, shortR, cq, cr int
	for p, c := range conns {
		before += c.before
		after += c.after
		cq += c.cq
		cr += c.cr
		if c.cq > c.all || c.cr > c.all {
			t.Errorf("connection from port %d: %d CQ and %d CR lines for %d requests nginx logged", p, c.cq, c.cr, c.all)
		}
		shortQ += max(0, c.before-c.cq)
		shortR += max(0, c.before-c.cr)
	}
	t.Logf("SIGTERM after 2 s of wrk; httplog exited in %v. nginx: %d requests, %d logged before the signal, %d after httplog exited; httplog: CQ %d, CR %d; missing before the signal: CQ %d, CR %d; kernel_drops=%d left_in_ring=%d",
		exit.Sub(sig).Round(time.Millisecond), len(access), before, after, cq, cr, shortQ, shortR, stats["kernel_drops"], stats["left_in_ring"])
	if before < 100 || after < 100 {
		t.Errorf("the load did not go on across the stop (%d requests before, %d after): the test proves nothing", before, after)
	}
	if shortQ > 0 || shortR > 0 {
		t.Errorf("requests nginx logged before SIGTERM without a line: %d CQ, %d CR missing (kernel_drops=%d left_in_ring=%d)",
			shortQ, shortR, stats["kernel_drops"], stats["left_in_ring"])
	}
	if stats["kernel_drops"] != 0 {
		t.Errorf("kernel_drops=%d under a moderate load", stats["kernel_drops"])
	}
	if stats["lines_lost"] != 0 || stats["write_errors"] != 0 || int(stats["CQ"]) != cq || int(stats["CR"]) != cr {
		t.Errorf("statistics do not match the files (CQ %d, CR %d): %s", cq, cr, lastStatsLine(stderr))
	}
}

// e2eEndpoint is the client endpoint (ADDR#PORT) of a CQ or CR line.
func e2eEndpoint(l liveLine, response bool) string {
	if response {
		return l.dst
	}
	return l.src
}

// ---------------------------------------------------------------------------
// Helpers

// e2eReadCapture returns the frames of a pcap or pcapng file, in order, as
// captured (up to a cut at the end of a truncated file).
func e2eReadCapture(t *testing.T, name string) [][]byte {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic, err := r.Peek(4)
	if err != nil {
		return nil
	}
	var read func() ([]byte, error)
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a {
		ng, err := pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		read = func() ([]byte, error) { b, _, err := ng.ReadPacketData(); return b, err }
	} else {
		pr, err := pcapgo.NewReader(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pr.SetSnaplen(1 << 20)
		read = func() ([]byte, error) { b, _, err := pr.ReadPacketData(); return b, err }
	}
	var frames [][]byte
	for {
		b, err := read()
		if err != nil {
			return frames
		}
		frames = append(frames, b)
	}
}

// e2eCheckBytes checks every log file byte by byte: each line ends in
// '\n' and is valid UTF-8 without control bytes.
// e2eStopAndRead checks that httplog still runs, stops it, checks that its
// counters add up and that its files hold whole lines, and returns its
// standard error, its counters, its lines, and how often each line's text
// (after the timestamp) occurs.
func e2eStopAndRead(t *testing.T, d *liveProc, dir string) (string, map[string]uint64, []liveLine, map[string]int) {
	t.Helper()
	if d.exited() {
		t.Fatalf("httplog died: %v\n%s", d.err, d.stderr.String())
	}
	stderr := stopHttplog(t, d)
	stats := parseStats(t, stderr)
	checkStatsAddUp(t, stderr)
	lines := readLines(t, dir)
	e2eCheckBytes(t, dir)
	got := map[string]int{}
	for _, l := range lines {
		got[l.rest]++
	}
	return stderr, stats, lines, got
}

func e2eCheckBytes(t *testing.T, dir string) {
	t.Helper()
	for name := range liveFileNames(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s does not end in a newline", name)
		}
		for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if !utf8.Valid(line) {
				t.Errorf("%s line %d is not valid UTF-8: %q", name, i+1, line)
			}
			if j := bytes.IndexFunc(line, func(r rune) bool { return r < 0x20 || r == 0x7f }); j >= 0 {
				t.Errorf("%s line %d holds the control byte %#x: %q", name, i+1, line[j], line)
			}
		}
	}
}

// e2eDiff compares two multisets of lines: what want has more of
// (missing) and what got has more of (extra), sorted, each with its count.
func e2eDiff(want, got map[string]int) (missing, extra []string) {
	for l, n := range want {
		if got[l] < n {
			missing = append(missing, fmt.Sprintf("%d× %s", n-got[l], e2eShort(l)))
		}
	}
	for l, n := range got {
		if want[l] < n {
			extra = append(extra, fmt.Sprintf("%d× %s", n-want[l], e2eShort(l)))
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// e2eShort shortens a very long line for a message.
func e2eShort(s string) string {
	if len(s) > 300 {
		return fmt.Sprintf("%s…(%d bytes)…%s", s[:200], len(s)-250, s[len(s)-50:])
	}
	return s
}

// e2eVmHWM is a process's peak resident set size, in bytes.
func e2eVmHWM(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// e2eRetrans is the number of TCP segments retransmitted so far by the
// client and the server namespaces together.
func e2eRetrans(t *testing.T, tp *liveTopology) uint64 {
	t.Helper()
	var sum uint64
	for _, ns := range []string{tp.cliNS, tp.srvNS} {
		out, err := tp.exec(ns, "cat", "/proc/net/snmp")
		if err != nil {
			t.Fatalf("/proc/net/snmp in %s: %v\n%s", ns, err, out)
		}
		var names []string
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 || f[0] != "Tcp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, n := range names {
				if n == "RetransSegs" && i < len(f) {
					v, _ := strconv.ParseUint(f[i], 10, 64)
					sum += v
				}
			}
		}
	}
	return sum
}

// e2eLogLoad notes the machine's load average, and other capture or
// benchmark processes, which make load tests less telling.
func e2eLogLoad(t *testing.T) {
	t.Helper()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		t.Logf("load average: %s", strings.TrimSpace(string(b)))
	}
}
