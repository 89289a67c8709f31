package main

// Live end-to-end tests, as root: two network namespaces joined by a veth
// pair, Debian's nginx in the server one, curl in the client one, and the
// httplog binary capturing for real with AF_PACKET on one end. Every packet
// stays inside namespaces made here (or on their loopback), so the tests
// send nothing to any other address.
//
// The helpers (liveTopology, startHttplog, stopHttplog, readLines,
// liveCurl, liveExpect) are meant to be reused by later live tests; the
// end-to-end tests of e2e_test.go add namespaces, links and VLANs to a
// topology with addNamespace, addLink and addVLAN.

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// liveTools are the programs every live test runs, with the Debian
// package that provides each.
var liveTools = map[string]string{
	"ip":    "iproute2",
	"nginx": "nginx-light",
	"curl":  "curl",
}

// liveMoreTools are programs only some live tests run (the end-to-end
// tests of e2e_test.go), with their Debian packages.
var liveMoreTools = map[string]string{
	"wrk":        "wrk",
	"tcpreplay":  "tcpreplay",
	"prometheus": "prometheus", // prometheus_test.go
	"promtool":   "prometheus",
	// install_test.go and privilege_test.go
	"systemd-analyze": "systemd",
	"logrotate":       "logrotate",
	"man":             "man-db",
	"groff":           "groff-base",
	"useradd":         "passwd",
	// ship_test.go
	"rsyslogd": "rsyslog",
}

// liveRequireRoot skips the test unless it runs as root.
func liveRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: AF_PACKET capture and network namespaces (run go test as root)")
	}
}

// liveTool returns the path of one of liveTools; a missing tool fails the
// test (it does not skip it) and names the Debian package to install.
func liveTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// PATH may lack the sbin directories (nginx and ip live there).
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	pkg := liveTools[name]
	if pkg == "" {
		pkg = liveMoreTools[name]
	}
	t.Fatalf("%s is not installed: the live tests need it; install the Debian package %s (apt-get install %s)", name, pkg, pkg)
	return ""
}

// liveEnv is the environment of the programs started here: ours, without
// HTTPLOG_* settings (only the flags count) and without proxies (curl must
// talk to the test's nginx, never to a proxy).
func liveEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "HTTPLOG_") || strings.HasSuffix(strings.ToLower(name), "_proxy") {
			continue
		}
		env = append(env, kv)
	}
	if os.Getenv("GORACE") == "" {
		// A daemon built with -race sleeps 1 s at exit by default.
		env = append(env, "GORACE=atexit_sleep_ms=50")
	}
	return env
}

// liveBuild is the httplog binary, built once per test process.
var liveBuild struct {
	once sync.Once
	bin  string
	err  error
}

// liveRace reports whether this test binary was built with -race; the
// daemon is then built with -race too, so that a data race in the live
// pipeline fails the tests.
func liveRace() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// liveGoBuild builds the package in the current directory into dir.
func liveGoBuild(dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "httplog-live")
	args := []string{"build", "-o", bin}
	if liveRace() {
		args = append(args, "-race")
	}
	cmd := exec.Command(gobin, append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// liveBinary returns the httplog binary. Under go test it is built once,
// next to the test binary in go's work directory (which go test removes
// afterwards); a test binary run by hand builds it into each test's
// temporary directory instead, so that nothing is left behind.
func liveBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil || !strings.Contains(exe, "go-build") {
		bin, err := liveGoBuild(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return bin
	}
	liveBuild.once.Do(func() {
		liveBuild.bin, liveBuild.err = liveGoBuild(filepath.Dir(exe))
	})
	if liveBuild.err != nil {
		t.Fatal(liveBuild.err)
	}
	return liveBuild.bin
}

// liveBuffer collects a process's output; safe for concurrent use.
type liveBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *liveBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *liveBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// liveProc is a process started by a test, known by its PID.
type liveProc struct {
	name   string
	cmd    *exec.Cmd
	stdout liveBuffer
	stderr liveBuffer
	done   chan struct{} // closed when it has exited and been reaped
	err    error         // of Wait, once done is closed
}

func (p *liveProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit.
func (p *liveProc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// terminate ends the process (by its PID): TERM, then KILL after grace.
func (p *liveProc) terminate(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if p.wait(grace) {
		return
	}
	_ = p.cmd.Process.Kill()
	p.wait(5 * time.Second)
}

// liveTopology is a server and a client network namespace, joined by a
// veth pair, and the processes the test started in them. Cleanup (run by
// t.Cleanup) ends those processes by PID, then deletes the namespaces.
// More namespaces, links and VLANs can be added (addNamespace, addLink,
// addVLAN); Cleanup deletes them too.
type liveTopology struct {
	t      *testing.T
	ip     string // path of ip(8)
	seq    int    // number of the topology in this process
	x      int    // 1…250, the third byte of its IPv4 subnets
	srvNS  string // server namespace, e.g. hl-srv-<pid>-<n>
	cliNS  string // client namespace
	srvIf  string // veth end in srvNS
	cliIf  string // veth end in cliNS
	srv4   string // 10.200.X.1
	cli4   string // 10.200.X.2
	srv6   string // fd00:200::1
	cli6   string // fd00:200::2
	mu     sync.Mutex
	procs  []*liveProc
	netns  []string // namespaces made, to delete
	closed sync.Once
}

// liveSeq numbers the topologies of this process, for unique names.
var liveSeq atomic.Int32

// newLiveTopology makes the two namespaces, with lo up in both and the
// veth pair addressed 10.200.X.1/24 and fd00:200::1/64 (server), .2 and
// ::2 (client). The IPv6 addresses are nodad, so usable at once.
func newLiveTopology(t *testing.T) *liveTopology {
	t.Helper()
	liveRequireRoot(t)
	for name := range liveTools {
		liveTool(t, name)
	}
	n := int(liveSeq.Add(1))
	x := (os.Getpid()+n)%250 + 1
	tp := &liveTopology{
		t:     t,
		ip:    liveTool(t, "ip"),
		seq:   n,
		x:     x,
		srvIf: "hl-veth-s", // names live inside the namespaces: no clash
		cliIf: "hl-veth-c",
		srv4:  fmt.Sprintf("10.200.%d.1", x),
		cli4:  fmt.Sprintf("10.200.%d.2", x),
		srv6:  "fd00:200::1",
		cli6:  "fd00:200::2",
	}
	t.Cleanup(tp.Cleanup)
	tp.srvNS = tp.addNamespace("srv")
	tp.cliNS = tp.addNamespace("cli")
	tp.addLink(liveEnd{tp.srvNS, tp.srvIf, tp.srv4, tp.srv6}, liveEnd{tp.cliNS, tp.cliIf, tp.cli4, tp.cli6})
	return tp
}

// liveEnd is one end of a link: a device in a namespace and its IPv4 (/24)
// and IPv6 (/64) addresses, without prefix length.
type liveEnd struct {
	ns, dev, v4, v6 string
}

// addNamespace makes one more namespace, hl-ROLE-PID-N, with lo up; Cleanup
// deletes it.
func (tp *liveTopology) addNamespace(role string) string {
	tp.t.Helper()
	ns := fmt.Sprintf("hl-%s-%d-%d", role, os.Getpid(), tp.seq)
	tp.run("netns", "add", ns)
	tp.mu.Lock()
	tp.netns = append(tp.netns, ns)
	tp.mu.Unlock()
	tp.run("-n", ns, "link", "set", "lo", "up")
	return ns
}

// addLink joins two namespaces with a veth pair, addresses both ends (the
// IPv6 addresses nodad, so usable at once), brings them up and waits for
// the carrier, so that the first SYN is not lost.
func (tp *liveTopology) addLink(a, b liveEnd) {
	tp.t.Helper()
	tp.run("-n", a.ns, "link", "add", a.dev, "type", "veth", "peer", "name", b.dev, "netns", b.ns)
	tp.address(a)
	tp.address(b)
	tp.waitUp(a) // a veth has its carrier once both ends are up
	tp.waitUp(b)
}

// addVLAN makes the 802.1Q sub-interface DEV.ID on end.dev (which keeps
// its own addresses), with the addresses of end, and returns its name.
func (tp *liveTopology) addVLAN(end liveEnd, id int) string {
	tp.t.Helper()
	vlan := fmt.Sprintf("%s.%d", end.dev, id)
	tp.run("-n", end.ns, "link", "add", "link", end.dev, "name", vlan, "type", "vlan", "id", strconv.Itoa(id))
	end.dev = vlan
	tp.address(end)
	tp.waitUp(end)
	return vlan
}

// address gives a device its addresses and brings it up.
func (tp *liveTopology) address(end liveEnd) {
	tp.t.Helper()
	tp.run("-n", end.ns, "addr", "add", end.v4+"/24", "dev", end.dev)
	tp.run("-n", end.ns, "addr", "add", end.v6+"/64", "dev", end.dev, "nodad")
	tp.run("-n", end.ns, "link", "set", end.dev, "up")
}

// waitUp waits for the carrier of a device (LOWER_UP).
func (tp *liveTopology) waitUp(end liveEnd) {
	tp.t.Helper()
	ok := liveWaitFor(5*time.Second, func() bool {
		out, err := exec.Command(tp.ip, "-n", end.ns, "-o", "link", "show", end.dev).Output()
		return err == nil && strings.Contains(string(out), "LOWER_UP")
	})
	if !ok {
		tp.t.Fatalf("%s in %s does not come up", end.dev, end.ns)
	}
}

// setMTU sets the MTU of a device in a namespace.
func (tp *liveTopology) setMTU(ns, dev string, mtu int) {
	tp.t.Helper()
	tp.run("-n", ns, "link", "set", "dev", dev, "mtu", strconv.Itoa(mtu))
}

// exec runs argv inside namespace ns to its end and returns its standard
// output and error together.
func (tp *liveTopology) exec(ns string, argv ...string) ([]byte, error) {
	cmd := exec.Command(tp.ip, append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Env = liveEnv()
	return cmd.CombinedOutput()
}

// run runs ip(8) with args, failing the test on an error.
func (tp *liveTopology) run(args ...string) string {
	tp.t.Helper()
	out, err := exec.Command(tp.ip, args...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start starts argv inside namespace ns (ip netns exec execs it, so the
// PID is the program's own) and keeps it for Cleanup.
func (tp *liveTopology) start(name, ns string, argv ...string) *liveProc {
	tp.t.Helper()
	p := &liveProc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(tp.ip, append([]string{"netns", "exec", ns}, argv...)...)
	p.cmd.Env = liveEnv()
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		tp.t.Fatalf("starting %s: %v", name, err)
	}
	tp.mu.Lock()
	tp.procs = append(tp.procs, p)
	tp.mu.Unlock()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// Cleanup ends the processes started in the topology, by PID and newest
// first, then deletes the namespaces (which removes the veth pair). It
// runs once; t.Cleanup calls it.
func (tp *liveTopology) Cleanup() {
	tp.closed.Do(func() {
		tp.mu.Lock()
		procs, netns := tp.procs, tp.netns
		tp.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].terminate(3 * time.Second)
			if !procs[i].exited() {
				tp.t.Errorf("%s (pid %d) survives KILL", procs[i].name, procs[i].cmd.Process.Pid)
			}
		}
		for _, ns := range netns {
			if out, _ := exec.Command(tp.ip, "netns", "pids", ns).Output(); len(bytes.TrimSpace(out)) > 0 {
				tp.t.Errorf("processes left in namespace %s: %s", ns, bytes.Fields(out))
			}
			if out, err := exec.Command(tp.ip, "netns", "del", ns).CombinedOutput(); err != nil {
				tp.t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		}
	})
}

// liveNginx is an nginx of the test's own, in one process
// (master_process off), logging to its temporary directory.
type liveNginx struct {
	proc   *liveProc
	dir    string
	access string // access log
	timing string // second access log, of log_format hltime (pairing_live_test.go)
	errlog string
}

// startNginx runs nginx in namespace ns with a configuration of its own:
// it listens on 80 and 8080 (IPv4 and IPv6), serves /hello.txt
// (text/plain) and / (index.html), answers 302 on /redirect, 200 "ok\n"
// to any method on /api and 200 "small\n" on /small; everything else is
// nginx's own (404, 405 …). Its access log has the combined format
// followed by the client port, the time, the Host header and the server
// endpoint (see liveAccessLine). A second log, timing.log, holds per
// request the client endpoint, the connection's number and the request's
// number on it, and nginx's $request_time (see pairAccess).
func (tp *liveTopology) startNginx(ns string) *liveNginx {
	t := tp.t
	t.Helper()
	nginx := liveTool(t, "nginx")
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	liveWrite(t, filepath.Join(www, "hello.txt"), "hello\n")
	liveWrite(t, filepath.Join(www, "index.html"), "<!DOCTYPE html>\n<title>httplog</title>\n<p>live test</p>\n")
	n := &liveNginx{dir: dir, access: filepath.Join(dir, "access.log"), timing: filepath.Join(dir, "timing.log"), errlog: filepath.Join(dir, "error.log")}
	q := strconv.Quote
	conf := fmt.Sprintf(`# written by live_test.go
daemon off;
master_process off;
pid %s;
error_log %s info;
events { worker_connections 256; }
http {
	log_format hl '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $remote_port $msec "$http_host" $server_addr $server_port';
	access_log %s hl;
	log_format hltime '$remote_addr $remote_port $connection $connection_requests $request_time $msec $status "$request"';
	access_log %s hltime;
	client_body_temp_path %s;
	proxy_temp_path %s;
	fastcgi_temp_path %s;
	uwsgi_temp_path %s;
	scgi_temp_path %s;
	types { text/html html; text/plain txt; }
	default_type text/plain;
	server {
		listen 80;
		listen 8080;
		listen [::]:80;
		listen [::]:8080;
		root %s;
		location = /redirect { return 302 /hello.txt; }
		location = /api { return 200 "ok\n"; }
		location = /small { return 200 "small\n"; }
	}
}
`, q(filepath.Join(dir, "nginx.pid")), q(n.errlog), q(n.access), q(n.timing),
		q(filepath.Join(dir, "tmp", "body")), q(filepath.Join(dir, "tmp", "proxy")),
		q(filepath.Join(dir, "tmp", "fastcgi")), q(filepath.Join(dir, "tmp", "uwsgi")),
		q(filepath.Join(dir, "tmp", "scgi")), q(www))
	confPath := filepath.Join(dir, "nginx.conf")
	liveWrite(t, confPath, conf)
	n.proc = tp.start("nginx", ns, nginx, "-e", n.errlog, "-p", dir+"/", "-c", confPath)
	// The pid file is written after the listening sockets are open.
	ready := liveWaitFor(10*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "nginx.pid"))
		return n.proc.exited() || (err == nil && len(bytes.TrimSpace(b)) > 0)
	})
	if !ready || n.proc.exited() {
		errlog, _ := os.ReadFile(n.errlog)
		t.Fatalf("nginx did not start (exited: %v, %v)\nstderr:\n%s\nerror log:\n%s", n.proc.exited(), n.proc.err, n.proc.stderr.String(), errlog)
	}
	return n
}

// stop ends nginx (fast shutdown) and returns its access log lines.
func (n *liveNginx) stop(t *testing.T) []string {
	t.Helper()
	n.proc.terminate(5 * time.Second)
	b, err := os.ReadFile(n.access)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// liveAccess is one line of the test nginx's access log (log_format hl):
// the combined format, then $remote_port $msec "$http_host" $server_addr
// $server_port.
type liveAccess struct {
	client, server netip.AddrPort
	request        string    // the request line as received (nginx's \xHH escapes undone)
	status         int       // the status nginx answered, or logged (499: client went away)
	ua, host       string    // User-Agent and Host as received, "-" if absent
	at             time.Time // $msec: when nginx logged the request, after its response
}

var liveAccessRE = regexp.MustCompile(`^(\S+) - \S+ \[[^\]]*\] "([^"]*)" (\d{3}) \d+ "[^"]*" "([^"]*)" (\d+) (\d+)\.(\d{3}) "([^"]*)" (\S+) (\d+)$`)

// liveParseAccess parses an access log line of the test's nginx.
func liveParseAccess(line string) (liveAccess, bool) {
	m := liveAccessRE.FindStringSubmatch(line)
	if m == nil {
		return liveAccess{}, false
	}
	cport, err1 := strconv.ParseUint(m[5], 10, 16)
	sec, err2 := strconv.ParseInt(m[6], 10, 64)
	ms, err3 := strconv.ParseInt(m[7], 10, 64)
	sport, err4 := strconv.ParseUint(m[10], 10, 16)
	caddr, err5 := netip.ParseAddr(m[1])
	saddr, err6 := netip.ParseAddr(m[9])
	status, err7 := strconv.Atoi(m[3])
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return liveAccess{}, false
	}
	return liveAccess{
		client:  netip.AddrPortFrom(caddr.Unmap(), uint16(cport)),
		server:  netip.AddrPortFrom(saddr.Unmap(), uint16(sport)),
		request: liveUnescapeNginx(m[2]),
		status:  status,
		ua:      liveUnescapeNginx(m[4]),
		host:    liveUnescapeNginx(m[8]),
		at:      time.Unix(sec, ms*int64(time.Millisecond)),
	}, true
}

// liveUnescapeNginx undoes the escaping of nginx's access log: '"', '\\'
// and bytes below 0x20 or from 0x7f on are written \xHH.
func liveUnescapeNginx(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// startHttplog runs the httplog binary in namespace ns on interface iface,
// for ports 80 and 8080, writing into dir, plus the extra flags; it
// returns once the daemon says it has started (its socket and filter are
// in place), so traffic sent afterwards is captured.
func startHttplog(t *testing.T, tp *liveTopology, ns, iface, dir string, extra ...string) *liveProc {
	t.Helper()
	argv := append([]string{liveBinary(t), "-i", iface, "-p", "80,8080", "-d", dir, "-log_every", "0"}, extra...)
	p := tp.start("httplog", ns, argv...)
	ok := liveWaitFor(10*time.Second, func() bool {
		return p.exited() || strings.Contains(p.stderr.String(), " started: ")
	})
	if !ok || p.exited() {
		t.Fatalf("httplog %s did not start in %s (exited: %v, %v); stderr:\n%s", strings.Join(argv[1:], " "), ns, p.exited(), p.err, p.stderr.String())
	}
	t.Logf("httplog in %s: %s", ns, strings.TrimSpace(p.stderr.String()))
	return p
}

// stopHttplog sends SIGTERM and checks that httplog exits with code 0
// within a few seconds, reporting no data race; it returns its standard
// error.
func stopHttplog(t *testing.T, p *liveProc) string {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to httplog (pid %d): %v", p.cmd.Process.Pid, err)
	}
	if !p.wait(5 * time.Second) {
		t.Fatalf("httplog (pid %d) still runs 5 s after SIGTERM; stderr:\n%s", p.cmd.Process.Pid, p.stderr.String())
	}
	stderr := p.stderr.String()
	t.Logf("httplog exited %v after SIGTERM: %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), p.err, stderr)
	if p.err != nil {
		t.Errorf("httplog exited with %v after SIGTERM, want exit code 0", p.err)
	}
	if strings.Contains(stderr, "DATA RACE") {
		t.Errorf("the race detector found a data race in httplog")
	}
	if out := p.stdout.String(); out != "" {
		t.Errorf("httplog wrote to standard output with -d DIR:\n%s", out)
	}
	return stderr
}

// liveLine is one log line, cut into its columns.
type liveLine struct {
	file string    // base name of its file
	ts   time.Time // DATE TIME, local
	rest string    // everything after "DATE TIME "
	src  string    // ADDR#PORT
	dst  string
	typ  string // CQ, CR, SQ, SR
}

var liveLineRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ((\S+)#(\d+) (\S+)#(\d+) (CQ|CR|SQ|SR) (.*))$`)

var liveDayFileRE = regexp.MustCompile(`^http-\d{8}\.log$`)

var liveFileRE = regexp.MustCompile(`^http-(?:(CQ|CR|SQ|SR)-)?(\d{8})\.log$`)

// readLines reads every file of the log directory, in name order (so day
// order), and checks what holds for any line: the name is a day file, the
// mode 0640, the file ends in '\n' (no partial line), every line has the
// columns of the spec with a valid timestamp of the day of its file and
// addresses in canonical (RFC 5952) form, and, with split files, the type
// of the file.
func readLines(t *testing.T, dir string) []liveLine {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []liveLine
	for _, ent := range ents { // ReadDir sorts by name
		name := ent.Name()
		if name == lockName {
			continue
		}
		m := liveFileRE.FindStringSubmatch(name)
		if m == nil || !ent.Type().IsRegular() {
			t.Errorf("unexpected file %s in the log directory", name)
			continue
		}
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().Perm() != 0o640 {
			t.Errorf("%s has mode %v, want 0640", name, st.Mode().Perm())
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s ends in a partial line: %q", name, b[bytes.LastIndexByte(b, '\n')+1:])
		}
		for _, text := range strings.SplitAfter(string(b), "\n") {
			if text == "" {
				continue
			}
			l, ok := liveParseLine(t, name, strings.TrimSuffix(text, "\n"))
			if !ok {
				continue
			}
			if day := l.ts.Format("20060102"); day != m[2] {
				t.Errorf("%s: line of day %s: %q", name, day, text)
			}
			if m[1] != "" && l.typ != m[1] {
				t.Errorf("%s: line of type %s: %q", name, l.typ, text)
			}
			lines = append(lines, l)
		}
	}
	return lines
}

// liveParseLine cuts a log line into columns, reporting a malformed one.
func liveParseLine(t *testing.T, file, text string) (liveLine, bool) {
	t.Helper()
	m := liveLineRE.FindStringSubmatch(text)
	if m == nil {
		t.Errorf("%s: malformed line %q", file, text)
		return liveLine{}, false
	}
	ts, err := time.ParseInLocation("2006-01-02 15:04:05.000", m[1], time.Local)
	if err != nil {
		t.Errorf("%s: bad timestamp in %q: %v", file, text, err)
		return liveLine{}, false
	}
	for _, a := range []string{m[3], m[5]} {
		if ip, err := netip.ParseAddr(a); err != nil || ip.String() != a {
			t.Errorf("%s: address %q is not in canonical form (RFC 5952) in %q", file, a, text)
		}
	}
	return liveLine{file: file, ts: ts, rest: m[2], src: m[3] + "#" + m[4], dst: m[5] + "#" + m[6], typ: m[7]}, true
}

// liveRequest is one curl request.
type liveRequest struct {
	method string   // GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH
	url    string   // with an explicit path
	host   string   // Host header to send; "" = curl's (the URL's)
	ua     string   // User-Agent to send (-A); "" = curl's own; "-" = none
	body   string   // request body (-d)
	header []string // more headers (-H)
	args   []string // more curl options, e.g. --path-as-is
	target string   // the request-target curl sends, when the URL's Go
	// form (RequestURI) differs from it, e.g. with --path-as-is
}

// liveExchange is a request as curl made it and the response it got.
type liveExchange struct {
	req            liveRequest
	requestLine    string // as sent
	host, ua       string // header values as sent, "-" for none
	client, server netip.AddrPort
	status         string // status line as received
	length, ctype  string // Content-Length, Content-Type; "-" for none
}

// liveAddr is ADDR#PORT, as httplog writes an endpoint.
func liveAddr(ap netip.AddrPort) string {
	return ap.Addr().String() + "#" + strconv.Itoa(int(ap.Port()))
}

// requestText and responseText are the lines httplog must write for the
// exchange, after the timestamp, with the given TYPE.
func (x *liveExchange) requestText(typ string) string {
	return fmt.Sprintf("%s %s %s %s %s %s", liveAddr(x.client), liveAddr(x.server), typ,
		liveEscape(x.requestLine), liveEscape(x.host), liveEscape(x.ua))
}

func (x *liveExchange) responseText(typ string) string {
	return fmt.Sprintf("%s %s %s %s %s %s", liveAddr(x.server), liveAddr(x.client), typ,
		liveEscape(x.status), liveEscape(x.length), liveEscape(x.ctype))
}

// liveEscape is the escaping of the spec (§2), written here from its words
// rather than taken from the parser: every byte 0x00–0x1f and 0x7f, and
// every byte that is not part of valid UTF-8, becomes \xNN (lower-case
// hex), a backslash becomes \\, and nothing else changes.
func liveEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", r)
		case r == '\\':
			b.WriteString("\\\\")
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

var liveUA struct {
	once sync.Once
	ua   string
	err  error
}

// liveCurlUA is curl's own User-Agent, curl/VERSION.
func liveCurlUA(t *testing.T) string {
	t.Helper()
	curl := liveTool(t, "curl")
	liveUA.once.Do(func() {
		out, err := exec.Command(curl, "--version").Output()
		f := strings.Fields(string(out))
		if err != nil || len(f) < 2 || f[0] != "curl" {
			liveUA.err = fmt.Errorf("curl --version: %v: %q", err, out)
			return
		}
		liveUA.ua = "curl/" + f[1]
	})
	if liveUA.err != nil {
		t.Fatal(liveUA.err)
	}
	return liveUA.ua
}

// liveCurl makes one request with curl in namespace ns (one connection,
// HTTP/1.1, no proxy, no redirect following) and returns what was sent
// and received: the endpoints from curl's -w, the response's status line
// and headers from its -D file.
func liveCurl(t *testing.T, tp *liveTopology, ns string, r liveRequest) liveExchange {
	t.Helper()
	u, err := url.Parse(r.url)
	if err != nil {
		t.Fatal(err)
	}
	x := liveExchange{req: r, host: u.Host, ua: liveCurlUA(t)}
	x.requestLine = r.method + " " + u.RequestURI() + " HTTP/1.1"
	if r.target != "" {
		x.requestLine = r.method + " " + r.target + " HTTP/1.1"
	}
	hdr := filepath.Join(t.TempDir(), "headers")
	args := []string{"netns", "exec", ns, liveTool(t, "curl"), "-q", "-sS", "-g", "--http1.1", "--noproxy", "*",
		"--max-time", "5", "-o", "/dev/null", "-D", hdr,
		"-w", "%{local_ip} %{local_port} %{remote_ip} %{remote_port}"}
	switch r.method {
	case "GET":
	case "HEAD":
		args = append(args, "-I")
	case "POST":
		if r.body == "" {
			args = append(args, "-X", "POST")
		}
	default:
		args = append(args, "-X", r.method)
	}
	if r.body != "" {
		args = append(args, "--data-binary", r.body)
	}
	if r.host != "" {
		args = append(args, "-H", "Host: "+r.host)
		x.host = r.host
	}
	switch r.ua {
	case "":
	case "-":
		args = append(args, "-H", "User-Agent:")
		x.ua = "-"
	default:
		args = append(args, "-A", r.ua)
		x.ua = r.ua
	}
	for _, h := range r.header {
		args = append(args, "-H", h)
	}
	args = append(args, r.args...)
	args = append(args, r.url)
	cmd := exec.Command(tp.ip, args...)
	cmd.Env = liveEnv()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("curl %s %s: %v\n%s", r.method, r.url, err, stderr)
	}
	f := strings.Fields(string(out))
	if len(f) != 4 {
		t.Fatalf("curl -w gave %q", out)
	}
	x.client = liveAddrPort(t, f[0], f[1])
	x.server = liveAddrPort(t, f[2], f[3])

	b, err := os.ReadFile(hdr)
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(strings.TrimRight(string(b), "\r\n"), "\r\n\r\n")
	if len(blocks) != 1 {
		t.Fatalf("curl %s %s: %d responses, want 1:\n%s", r.method, r.url, len(blocks), b)
	}
	hl := strings.Split(blocks[0], "\r\n")
	x.status, x.length, x.ctype = hl[0], "-", "-"
	for _, h := range hl[1:] {
		name, value, _ := strings.Cut(h, ":")
		switch strings.ToLower(name) {
		case "content-length":
			x.length = strings.TrimSpace(value)
		case "content-type":
			x.ctype = strings.TrimSpace(value)
		}
	}
	t.Logf("curl %s %s → %s (%s → %s)", r.method, r.url, x.status, liveAddr(x.client), liveAddr(x.server))
	return x
}

func liveAddrPort(t *testing.T, ip, port string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	p, err2 := strconv.ParseUint(port, 10, 16)
	if err != nil || err2 != nil {
		t.Fatalf("curl reported the endpoint %q %q", ip, port)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p))
}

// liveExpect checks the lines against the exchanges: each request appears
// exactly once, as reqType, and each response exactly once, as respType,
// not before its request; no other line was written; and every timestamp
// lies between from and to. It returns the number of lines of each type.
func liveExpect(t *testing.T, lines []liveLine, xs []liveExchange, reqType, respType string, from, to time.Time) map[string]int {
	t.Helper()
	return liveExpectGroups(t, lines, []liveGroup{{xs, reqType, respType}}, from, to)
}

// liveGroup is exchanges whose lines have the same two types, e.g. those
// a host served (CQ, CR) and those it made (SQ, SR).
type liveGroup struct {
	xs                []liveExchange
	reqType, respType string
}

// liveExpectGroups is liveExpect for several groups of exchanges at once:
// each exchange's request and response appear exactly once, with the types
// of its group, and no other line was written.
func liveExpectGroups(t *testing.T, lines []liveLine, groups []liveGroup, from, to time.Time) map[string]int {
	t.Helper()
	count := map[string]int{}
	index := map[string][]int{}
	for i, l := range lines {
		count[l.typ]++
		index[l.rest] = append(index[l.rest], i)
		if l.ts.Before(from.Add(-time.Second)) || l.ts.After(to.Add(time.Second)) {
			t.Errorf("timestamp %s outside the test's run (%s … %s): %s", l.ts.Format(time.StampMilli), from.Format(time.StampMilli), to.Format(time.StampMilli), l.rest)
		}
	}
	want := map[string]int{}
	for _, g := range groups {
		want[g.reqType] += len(g.xs)
		want[g.respType] += len(g.xs)
		liveExpectGroup(t, lines, index, g)
	}
	for _, typ := range []string{"CQ", "CR", "SQ", "SR"} {
		if count[typ] != want[typ] {
			t.Errorf("%d %s lines, want %d", count[typ], typ, want[typ])
		}
	}
	if t.Failed() {
		var all []string
		for _, l := range lines {
			all = append(all, l.file+": "+l.ts.Format("15:04:05.000")+" "+l.rest)
		}
		t.Logf("the lines written:\n%s", strings.Join(all, "\n"))
	}
	return count
}

// liveExpectGroup checks the lines of one group's exchanges; index maps a
// line's text (after the timestamp) to its positions in lines.
func liveExpectGroup(t *testing.T, lines []liveLine, index map[string][]int, g liveGroup) {
	t.Helper()
	xs, reqType, respType := g.xs, g.reqType, g.respType
	for i := range xs {
		x := &xs[i]
		q, r := x.requestText(reqType), x.responseText(respType)
		qi, ri := index[q], index[r]
		if len(qi) != 1 {
			t.Errorf("request %s %s: %d lines %q, want 1", x.req.method, x.req.url, len(qi), q)
		}
		if len(ri) != 1 {
			t.Errorf("response to %s %s: %d lines %q, want 1", x.req.method, x.req.url, len(ri), r)
		}
		if len(qi) == 1 && len(ri) == 1 {
			lq, lr := lines[qi[0]], lines[ri[0]]
			if lr.ts.Before(lq.ts) || (lq.file == lr.file && ri[0] < qi[0]) {
				t.Errorf("response line before its request line:\n%s %s\n%s %s", lr.file, lr.rest, lq.file, lq.rest)
			}
		}
	}
}

// liveCheckStats checks the final statistics line of httplog's standard
// error: its line counts are the lines found, and nothing was lost.
func liveCheckStats(t *testing.T, stderr string, count map[string]int) {
	t.Helper()
	stats, last := parseStats(t, stderr), lastStatsLine(stderr)
	for _, typ := range []string{"CQ", "CR", "SQ", "SR"} {
		if v, ok := stats[typ]; !ok || v != uint64(count[typ]) {
			t.Errorf("final statistics say %s=%d (present: %v), the files hold %d: %s", typ, v, ok, count[typ], last)
		}
	}
	for _, k := range []string{"lines_lost", "write_errors", "kernel_drops", "malformed"} {
		if v, ok := stats[k]; !ok || v != 0 {
			t.Errorf("final statistics: %s=%d (present: %v), want 0: %s", k, v, ok, last)
		}
	}
}

// liveCheckAccessLog checks that nginx logged as many requests as httplog.
// liveFileNames is the set of names in a log directory, but for httplog's
// lock file.
func liveFileNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		if e.Name() != lockName {
			names[e.Name()] = true
		}
	}
	return names
}

// liveFinish ends a test's run: stops httplog and nginx, and checks the
// lines against the exchanges (requests reqType, responses respType sent
// since from), the statistics line and nginx's access log. It returns the
// lines for further checks.
func liveFinish(t *testing.T, d *liveProc, ng *liveNginx, dir string, xs []liveExchange, reqType, respType string, from time.Time) []liveLine {
	t.Helper()
	to := time.Now()
	stderr := stopHttplog(t, d)
	access := ng.stop(t)
	lines := readLines(t, dir) // also checks that each split file holds its type only
	count := liveExpect(t, lines, xs, reqType, respType, from, to)
	liveCheckStats(t, stderr, count)
	liveCheckAccessLog(t, access, count, reqType)
	return lines
}

func liveCheckAccessLog(t *testing.T, access []string, count map[string]int, reqType string) {
	t.Helper()
	if len(access) != count[reqType] {
		t.Errorf("nginx logged %d requests, httplog %d %s lines; access log:\n%s", len(access), count[reqType], reqType, strings.Join(access, "\n"))
	}
}

func liveWaitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

func liveWrite(t *testing.T, name, text string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// liveURL joins a host (IPv6 in brackets), an optional port and a path.
func liveURL(addr string, port int, path string) string {
	host := addr
	if strings.Contains(addr, ":") {
		host = "[" + addr + "]"
	}
	if port != 80 {
		host += ":" + strconv.Itoa(port)
	}
	return "http://" + host + path
}

// liveLogDir is an empty log directory that httplog creates itself.
func liveLogDir(t *testing.T) string {
	return filepath.Join(t.TempDir(), "log")
}

// TestLiveNginxCurl: httplog on the server's veth end logs, for curl's
// requests to nginx (every method, ports 80 and 8080, IPv4 and IPv6), one
// CQ line per request and one CR line per response, exactly as sent.
func TestLiveNginxCurl(t *testing.T) {
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir)

	v4, v6 := tp.srv4, tp.srv6
	reqs := []liveRequest{
		{method: "GET", url: liveURL(v4, 80, "/hello.txt"), host: "www.example.test", ua: "hl-agent/1"},
		{method: "GET", url: liveURL(v4, 8080, "/"), ua: "Mozilla/5.0 (X11; Linux x86_64) hl-test/2.0"},
		{method: "POST", url: liveURL(v4, 80, "/api"), ua: "hl-post/1", body: "a=1&b=2"},
		{method: "HEAD", url: liveURL(v4, 80, "/hello.txt"), ua: "hl-head/1"},
		{method: "PUT", url: liveURL(v4, 8080, "/api?id=7"), ua: "hl-put/1", body: "put body"},
		{method: "DELETE", url: liveURL(v4, 80, "/api?id=7"), ua: "hl-delete/1"},
		{method: "OPTIONS", url: liveURL(v4, 80, "/api"), ua: "hl-options/1"},
		{method: "PATCH", url: liveURL(v4, 8080, "/api"), ua: "hl-patch/1", body: `{"x":1}`, header: []string{"Content-Type: application/json"}},
		{method: "GET", url: liveURL(v4, 80, "/redirect")},            // 302, curl's own User-Agent
		{method: "POST", url: liveURL(v4, 80, "/hello.txt"), ua: "-"}, // no User-Agent at all; nginx: 405
		{method: "GET", url: liveURL(v6, 80, "/hello.txt"), ua: "hl-v6/1"},
		{method: "GET", url: liveURL(v6, 80, "/missing"), host: "v6.example.test"}, // 404
	}
	from := time.Now()
	var xs []liveExchange
	for _, r := range reqs {
		x := liveCurl(t, tp, tp.cliNS, r)
		xs = append(xs, x)
		// The endpoints curl reports are the topology's (so the expected
		// lines hold the RFC 5952 text of fd00:200::1, not curl's).
		srv, cli := tp.srv4, tp.cli4
		if strings.Contains(r.url, "[") {
			srv, cli = tp.srv6, tp.cli6
		}
		if x.server.Addr().String() != srv || x.client.Addr().String() != cli {
			t.Fatalf("curl %s went %s → %s, want %s → %s", r.url, liveAddr(x.client), liveAddr(x.server), cli, srv)
		}
	}
	// What nginx answered is what the CR lines must say; spot-check that
	// the configuration did what it should, so the test covers them.
	wantStatus := []string{"200", "200", "200", "200", "200", "200", "200", "200", "302", "405", "200", "404"}
	for i, x := range xs {
		if f := strings.Fields(x.status); len(f) < 2 || f[0] != "HTTP/1.1" || f[1] != wantStatus[i] {
			t.Errorf("%s %s: nginx answered %q, want status %s", x.req.method, x.req.url, x.status, wantStatus[i])
		}
	}
	lines := liveFinish(t, d, ng, dir, xs, "CQ", "CR", from)
	// Day files only: http-YYYYMMDD.log.
	for _, l := range lines {
		if !liveDayFileRE.MatchString(l.file) {
			t.Errorf("line in %s, want only http-YYYYMMDD.log files", l.file)
		}
	}
}

// TestLiveSplitFiles: with -log_split, CQ lines go to http-CQ-YYYYMMDD.log
// and CR lines to http-CR-YYYYMMDD.log, and no other file is made.
func TestLiveSplitFiles(t *testing.T) {
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-log_split")

	from := time.Now()
	xs := []liveExchange{
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv4, 80, "/hello.txt"), ua: "hl-split/1"}),
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "POST", url: liveURL(tp.srv4, 8080, "/api"), body: "x=1"}),
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv6, 80, "/redirect"), ua: "hl-split/6"}),
	}
	liveFinish(t, d, ng, dir, xs, "CQ", "CR", from)
	to := time.Now()
	// The files: CQ and CR of each day of the run (two around midnight).
	want := map[string]bool{}
	y, m, dd := from.Date()
	for day := time.Date(y, m, dd, 0, 0, 0, 0, time.Local); !day.After(to); day = day.AddDate(0, 0, 1) {
		want["http-CQ-"+day.Format("20060102")+".log"] = true
		want["http-CR-"+day.Format("20060102")+".log"] = true
	}
	have := liveFileNames(t, dir)
	for name := range have {
		if !want[name] {
			t.Errorf("unexpected file %s with -log_split (want only http-CQ-/http-CR-YYYYMMDD.log)", name)
		}
	}
	if from.Format("20060102") == to.Format("20060102") { // no midnight in between
		for name := range want {
			if !have[name] {
				t.Errorf("no file %s with -log_split", name)
			}
		}
	}
}

// TestLiveSQSR: httplog on the client's veth end sees the client's own
// requests to a remote server as SQ and the server's responses as SR.
func TestLiveSQSR(t *testing.T) {
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.cliNS, tp.cliIf, dir)

	from := time.Now()
	xs := []liveExchange{
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv4, 80, "/hello.txt"), ua: "hl-sq/1"}),
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "PUT", url: liveURL(tp.srv4, 8080, "/api"), body: "v"}),
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "HEAD", url: liveURL(tp.srv6, 80, "/"), host: "sq.example.test"}),
	}
	liveFinish(t, d, ng, dir, xs, "SQ", "SR", from)
}

// TestLiveLoopbackOnce: on lo the kernel shows every frame to a packet
// socket twice (going out and coming in); httplog logs each request and
// each response once.
func TestLiveLoopbackOnce(t *testing.T) {
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, "lo", dir)

	from := time.Now()
	xs := []liveExchange{
		liveCurl(t, tp, tp.srvNS, liveRequest{method: "GET", url: liveURL("127.0.0.1", 80, "/hello.txt"), ua: "hl-lo/1"}),
		liveCurl(t, tp, tp.srvNS, liveRequest{method: "POST", url: liveURL("127.0.0.1", 8080, "/api"), body: "lo"}),
		liveCurl(t, tp, tp.srvNS, liveRequest{method: "GET", url: liveURL("::1", 80, "/redirect"), ua: "hl-lo/6"}),
	}
	liveFinish(t, d, ng, dir, xs, "CQ", "CR", from)
}

// TestLiveLongPortList: with as many -p ports as the kernel filter holds
// on one interface (80, 2013 others, 8080), the filter the kernel runs
// passes requests and responses of the first and the last port, IPv4 and
// IPv6. (Jumps of more than 255 instructions once went astray: with 128
// ports, no response passed.)
func TestLiveLongPortList(t *testing.T) {
	ports := []string{"80", "8080"}
	for p := 100; len(ports) < 2015; p += 2 {
		ports = append(ports, strconv.Itoa(p))
	}
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, "-p", strings.Join(ports, ","))

	from := time.Now()
	xs := []liveExchange{
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv4, 80, "/hello.txt"), ua: "hl-ports/1"}),
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "POST", url: liveURL(tp.srv4, 8080, "/api"), body: "p"}),
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv6, 80, "/redirect"), ua: "hl-ports/6"}),
		liveCurl(t, tp, tp.cliNS, liveRequest{method: "PUT", url: liveURL(tp.srv6, 8080, "/api"), body: "q"}),
	}
	liveFinish(t, d, ng, dir, xs, "CQ", "CR", from)
}

// TestLiveStopDrainsRing: SIGTERM right after a request still logs it. The
// kernel hands a TPACKET_V3 ring block over only when it is full or its
// block timeout has passed, so the last frames before the signal may still
// be in the kernel's hands when it arrives; httplog must read them before
// it exits. The request is sent at several offsets within the reader's
// 100 ms poll period, since only some offsets expose a reader that stops at
// its first poll timeout after the signal.
func TestLiveStopDrainsRing(t *testing.T) {
	liveStopDrainsRing(t)
}

// liveStopDrainsRing is TestLiveStopDrainsRing with more httplog flags.
func liveStopDrainsRing(t *testing.T, extra ...string) {
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	const rounds = 8
	for i := 0; i < rounds; i++ {
		dir := liveLogDir(t)
		d := startHttplog(t, tp, tp.srvNS, "lo", dir, extra...)
		time.Sleep(time.Duration(i) * 100 * time.Millisecond / rounds)
		from := time.Now()
		x := liveCurl(t, tp, tp.srvNS, liveRequest{method: "GET", url: liveURL("127.0.0.1", 80, "/hello.txt"), ua: fmt.Sprintf("hl-drain/%d", i)})
		stderr := stopHttplog(t, d) // at once: no pause for the ring
		count := liveExpect(t, readLines(t, dir), []liveExchange{x}, "CQ", "CR", from, time.Now())
		liveCheckStats(t, stderr, count)
		if t.Failed() {
			t.Fatalf("round %d (request %v after the start): lines captured before SIGTERM are missing", i, time.Duration(i)*100*time.Millisecond/rounds)
		}
	}
	liveCheckAccessLog(t, ng.stop(t), map[string]int{"CQ": rounds}, "CQ")
}

// TestLiveInterfaceDownUp: the captured interface going down and up again
// does not stop httplog (it did while gopacket's poll(2) waited for the
// ring: the socket's error ended the capture); it says so, and the lines
// of requests before and after are all there. An interface that is
// removed ends httplog with exit code 1 and a message naming it.
func TestLiveInterfaceDownUp(t *testing.T) {
	liveInterfaceDownUp(t)
}

// liveInterfaceDownUp is TestLiveInterfaceDownUp with more httplog flags.
func liveInterfaceDownUp(t *testing.T, extra ...string) {
	tp := newLiveTopology(t)
	ng := tp.startNginx(tp.srvNS)
	dir := liveLogDir(t)
	d := startHttplog(t, tp, tp.srvNS, tp.srvIf, dir, extra...)
	srv := liveEnd{tp.srvNS, tp.srvIf, tp.srv4, tp.srv6}
	cli := liveEnd{tp.cliNS, tp.cliIf, tp.cli4, tp.cli6}

	from := time.Now()
	xs := []liveExchange{liveCurl(t, tp, tp.cliNS, liveRequest{method: "GET", url: liveURL(tp.srv4, 80, "/hello.txt"), ua: "hl-before/1"})}
	tp.run("-n", tp.srvNS, "link", "set", tp.srvIf, "down")
	if !liveWaitFor(5*time.Second, func() bool { return strings.Contains(d.stderr.String(), "the interface went down") }) {
		t.Fatalf("no message about %s going down; stderr:\n%s", tp.srvIf, d.stderr.String())
	}
	tp.run("-n", tp.srvNS, "link", "set", tp.srvIf, "up")
	tp.waitUp(srv)
	tp.waitUp(cli)
	// IPv4 only after the flap: the IPv6 addresses went with the link.
	xs = append(xs, liveCurl(t, tp, tp.cliNS, liveRequest{method: "POST", url: liveURL(tp.srv4, 8080, "/api"), ua: "hl-after/1", body: "up"}))
	if !liveWaitFor(5*time.Second, func() bool { return strings.Contains(d.stderr.String(), "the interface is up again") }) {
		t.Errorf("no message about %s being up again; stderr:\n%s", tp.srvIf, d.stderr.String())
	}
	if d.exited() {
		t.Fatalf("httplog exited when %s went down and up: %v; stderr:\n%s", tp.srvIf, d.err, d.stderr.String())
	}
	liveFinish(t, d, ng, dir, xs, "CQ", "CR", from)
	for _, msg := range []string{"the interface went down", "the interface is up again"} {
		if n := strings.Count(d.stderr.String(), msg); n != 1 {
			t.Errorf("%q said %d times, want once; stderr:\n%s", msg, n, d.stderr.String())
		}
	}

	// Removal: the server's end goes, and with it its veth peer.
	d = startHttplog(t, tp, tp.srvNS, tp.srvIf, liveLogDir(t), extra...)
	tp.run("-n", tp.srvNS, "link", "del", tp.srvIf)
	if !d.wait(5 * time.Second) {
		t.Fatalf("httplog still runs 5 s after %s was removed; stderr:\n%s", tp.srvIf, d.stderr.String())
	}
	want := "stopped: -i " + tp.srvIf + ": the interface was removed"
	var exit *exec.ExitError
	if !errors.As(d.err, &exit) || exit.ExitCode() != 1 || !strings.Contains(d.stderr.String(), want) ||
		strings.Count(d.stderr.String(), "the interface was removed") != 1 {
		t.Errorf("after removing %s: exit %v, stderr:\n%s\nwant exit code 1 and %q", tp.srvIf, d.err, d.stderr.String(), want)
	}
}
