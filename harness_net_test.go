package main

// The network of the tests that run the binary (harness_test.go says what
// else the harness holds): network namespaces joined by veth pairs, made
// and deleted by the test, processes started inside them, and raw frames
// sent into them. Every packet stays inside namespaces made here (or on
// their loopback), so the tests send nothing to any other address.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// topology is a server and a client network namespace, joined by a veth
// pair. More namespaces, links and VLANs can be added (addNamespace,
// addLink, addVLAN); a cleanup deletes them all, after the processes
// started in them have been ended (startProc's cleanups run first).
type topology struct {
	t     *testing.T
	ip    string // path of ip(8)
	seq   int    // number of the topology in this process
	x     int    // 1…250, the third byte of its IPv4 subnets
	srvNS string // server namespace, e.g. hl-srv-<pid>-<n>
	cliNS string // client namespace
	srvIf string // veth end in srvNS
	cliIf string // veth end in cliNS
	srv4  string // 10.200.X.1
	cli4  string // 10.200.X.2
	srv6  string // fd00:200::1
	cli6  string // fd00:200::2
	netns []string
}

// topologySeq numbers the topologies of this process, for unique names.
var topologySeq atomic.Int32

// newTopology makes the two namespaces, with lo up in both and the veth
// pair addressed 10.200.X.1/24 and fd00:200::1/64 (server), .2 and ::2
// (client). It skips the test unless it runs as root, and fails it when
// ip, nginx or curl is missing.
func newTopology(t *testing.T) *topology {
	t.Helper()
	requireRoot(t, "AF_PACKET capture and network namespaces")
	for _, name := range []string{"ip", "nginx", "curl"} {
		tool(t, name)
	}
	n := int(topologySeq.Add(1))
	x := (os.Getpid()+n)%250 + 1
	tp := &topology{
		t:     t,
		ip:    tool(t, "ip"),
		seq:   n,
		x:     x,
		srvIf: "hl-veth-s", // names live inside the namespaces: no clash
		cliIf: "hl-veth-c",
		srv4:  fmt.Sprintf("10.200.%d.1", x),
		cli4:  fmt.Sprintf("10.200.%d.2", x),
		srv6:  "fd00:200::1",
		cli6:  "fd00:200::2",
	}
	t.Cleanup(tp.deleteNamespaces)
	tp.srvNS = tp.addNamespace("srv")
	tp.cliNS = tp.addNamespace("cli")
	tp.addLink(tp.srvEnd(), tp.cliEnd())
	return tp
}

// linkEnd is one end of a link: a device in a namespace and its IPv4
// (/24) and IPv6 (/64) addresses, without prefix length.
type linkEnd struct {
	ns, dev, v4, v6 string
}

// srvEnd and cliEnd are the two ends of the server–client veth.
func (tp *topology) srvEnd() linkEnd { return linkEnd{tp.srvNS, tp.srvIf, tp.srv4, tp.srv6} }
func (tp *topology) cliEnd() linkEnd { return linkEnd{tp.cliNS, tp.cliIf, tp.cli4, tp.cli6} }

// addNamespace makes one more namespace, hl-ROLE-PID-N, with lo up.
func (tp *topology) addNamespace(role string) string {
	tp.t.Helper()
	ns := fmt.Sprintf("hl-%s-%d-%d", role, os.Getpid(), tp.seq)
	tp.run("netns", "add", ns)
	tp.netns = append(tp.netns, ns)
	tp.run("-n", ns, "link", "set", "lo", "up")
	return ns
}

// addLink joins two namespaces with a veth pair, addresses both ends (the
// IPv6 addresses nodad, so usable at once), brings them up and waits for
// the carrier, so that the first SYN is not lost.
func (tp *topology) addLink(a, b linkEnd) {
	tp.t.Helper()
	tp.run("-n", a.ns, "link", "add", a.dev, "type", "veth", "peer", "name", b.dev, "netns", b.ns)
	tp.address(a)
	tp.address(b)
	tp.waitUp(a) // a veth has its carrier once both ends are up
	tp.waitUp(b)
}

// addVLAN makes the 802.1Q sub-interface DEV.ID on end.dev (which keeps
// its own addresses), with the addresses of end, and returns its name.
func (tp *topology) addVLAN(end linkEnd, id int) string {
	tp.t.Helper()
	vlan := fmt.Sprintf("%s.%d", end.dev, id)
	tp.run("-n", end.ns, "link", "add", "link", end.dev, "name", vlan, "type", "vlan", "id", strconv.Itoa(id))
	end.dev = vlan
	tp.address(end)
	tp.waitUp(end)
	return vlan
}

// address gives a device its addresses and brings it up.
func (tp *topology) address(end linkEnd) {
	tp.t.Helper()
	tp.run("-n", end.ns, "addr", "add", end.v4+"/24", "dev", end.dev)
	tp.run("-n", end.ns, "addr", "add", end.v6+"/64", "dev", end.dev, "nodad")
	tp.run("-n", end.ns, "link", "set", end.dev, "up")
}

// waitUp waits for the carrier of a device (LOWER_UP).
func (tp *topology) waitUp(end linkEnd) {
	tp.t.Helper()
	ok := waitFor(5*time.Second, func() bool {
		out, err := exec.Command(tp.ip, "-n", end.ns, "-o", "link", "show", end.dev).Output()
		return err == nil && strings.Contains(string(out), "LOWER_UP")
	})
	if !ok {
		tp.t.Fatalf("%s in %s does not come up", end.dev, end.ns)
	}
}

// setMTU sets the MTU of both ends of the server–client veth.
func (tp *topology) setMTU(mtu int) {
	tp.t.Helper()
	for _, end := range []linkEnd{tp.srvEnd(), tp.cliEnd()} {
		tp.run("-n", end.ns, "link", "set", "dev", end.dev, "mtu", strconv.Itoa(mtu))
	}
}

// flap takes the server's veth end down, waits until httplog d says so,
// brings it up again and waits for the carrier of both ends.
func (tp *topology) flap(t testing.TB, d *proc) {
	t.Helper()
	tp.run("-n", tp.srvNS, "link", "set", tp.srvIf, "down")
	if !d.stderr.waitText("the interface went down", 5*time.Second) {
		t.Fatalf("no message about %s going down; stderr:\n%s", tp.srvIf, d.stderr.String())
	}
	tp.run("-n", tp.srvNS, "link", "set", tp.srvIf, "up")
	tp.waitUp(tp.srvEnd())
	tp.waitUp(tp.cliEnd())
}

// exec runs argv inside namespace ns to its end and returns its standard
// output and error together.
func (tp *topology) exec(ns string, argv ...string) ([]byte, error) {
	cmd := exec.Command(tp.ip, append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = testEnv()
	return cmd.CombinedOutput()
}

// run runs ip(8) with args, failing the test on an error.
func (tp *topology) run(args ...string) string {
	tp.t.Helper()
	out, err := exec.Command(tp.ip, args...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start starts argv inside namespace ns (ip netns exec execs it, so the
// PID is the program's own); the test t ends it if it is left running.
func (tp *topology) start(t testing.TB, name, ns string, argv ...string) *proc {
	t.Helper()
	return startProc(t, name, exec.Command(tp.ip, append([]string{"netns", "exec", ns}, argv...)...))
}

// startHttplog runs the httplog binary in namespace ns on interface
// iface, for ports 80 and 8080, writing into dir, plus the extra flags;
// it returns once the daemon says it has started.
func (tp *topology) startHttplog(t testing.TB, ns, iface, dir string, extra ...string) *proc {
	t.Helper()
	argv := append([]string{httplogBinary(t), "-i", iface, "-p", "80,8080", "-d", dir, "-log_every", "0"}, extra...)
	p := tp.start(t, "httplog", ns, argv...)
	waitHttplogStarted(t, p, append([]string{"in", ns}, argv[1:]...))
	return p
}

// deleteNamespaces checks that no process is left in the namespaces and
// deletes them (which removes their links).
func (tp *topology) deleteNamespaces() {
	for _, ns := range tp.netns {
		if out, _ := exec.Command(tp.ip, "netns", "pids", ns).Output(); len(bytes.TrimSpace(out)) > 0 {
			tp.t.Errorf("processes left in namespace %s: %s", ns, bytes.Fields(out))
		}
		if out, err := exec.Command(tp.ip, "netns", "del", ns).CombinedOutput(); err != nil {
			tp.t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
		}
	}
}

// newLogDir is an empty log directory that httplog creates itself.
func newLogDir(t testing.TB) string {
	return filepath.Join(t.TempDir(), "log")
}

// inNetns runs fn on an OS thread of its own moved into network
// namespace ns: sockets made there belong to ns. The thread is moved back
// before the result is reported (so that no thread of the test is left in
// ns when it is deleted); if that fails it stays locked and ends with its
// goroutine, so no other goroutine ever runs in ns.
func inNetns(ns string, fn func() error) error {
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

// packetSocket opens an AF_PACKET socket (SOCK_RAW, all protocols, with
// the extra type flags) bound to device dev of namespace ns.
func packetSocket(ns, dev string, flags int) (int, error) {
	fd := -1
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|flags, int(proto)); err != nil {
			return fmt.Errorf("AF_PACKET socket: %v", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind to %s: %v", dev, err)
		}
		return nil
	})
	return fd, err
}

// sendFrames writes each frame to a raw AF_PACKET socket bound to dev in
// namespace ns, and returns the error of each write.
func sendFrames(ns, dev string, frames [][]byte) ([]error, error) {
	fd, err := packetSocket(ns, dev, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	errs := make([]error, len(frames))
	for i, f := range frames {
		n, err := unix.Write(fd, f)
		if err == nil && n != len(f) {
			err = fmt.Errorf("wrote %d of %d bytes", n, len(f))
		}
		errs[i] = err
	}
	return errs, nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
