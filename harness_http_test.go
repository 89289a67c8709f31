package main

// HTTP in the tests that run the binary (harness_test.go says what else
// the harness holds): Debian's nginx with a configuration of the test's
// own, its access log read back, curl requests and what they sent and
// got, and the log lines those must make.

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// nginxServer is an nginx of the test's own, in one process
// (master_process off), logging to its temporary directory.
type nginxServer struct {
	proc   *proc
	dir    string
	access string // access log
	timing string // second access log, of log_format hltime (pairing_live_test.go)
	errlog string
}

// nginxConf is the test's nginx configuration: a pid file, the error log,
// the access log, the timing log, the five temporary directories and the
// document root fill its %s.
const nginxConf = `# written by harness_http_test.go
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
`

// startNginx runs nginx in namespace ns with the configuration nginxConf:
// it listens on 80 and 8080 (IPv4 and IPv6), serves /hello.txt
// (text/plain) and / (index.html), answers 302 on /redirect, 200 "ok\n"
// to any method on /api and 200 "small\n" on /small; everything else is
// nginx's own (404, 405 …). Its access log has the combined format
// followed by the client port, the time, the Host header and the server
// endpoint (see parseAccess). A second log, timing.log, holds per request
// the client endpoint, the connection's number and the request's number
// on it, and nginx's $request_time (see pairAccess). It returns once
// nginx listens.
func (tp *topology) startNginx(ns string) *nginxServer {
	t := tp.t
	t.Helper()
	nginx := tool(t, "nginx")
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(www, "hello.txt"), "hello\n", 0o644)
	writeFile(t, filepath.Join(www, "index.html"), "<!DOCTYPE html>\n<title>httplog</title>\n<p>live test</p>\n", 0o644)
	n := &nginxServer{dir: dir, access: filepath.Join(dir, "access.log"), timing: filepath.Join(dir, "timing.log"), errlog: filepath.Join(dir, "error.log")}
	q := func(name ...string) string { return strconv.Quote(filepath.Join(append([]string{dir}, name...)...)) }
	conf := fmt.Sprintf(nginxConf, q("nginx.pid"), q("error.log"), q("access.log"), q("timing.log"),
		q("tmp", "body"), q("tmp", "proxy"), q("tmp", "fastcgi"), q("tmp", "uwsgi"), q("tmp", "scgi"), q("www"))
	confPath := filepath.Join(dir, "nginx.conf")
	writeFile(t, confPath, conf, 0o644)
	n.proc = tp.start(t, "nginx", ns, nginx, "-e", n.errlog, "-p", dir+"/", "-c", confPath)
	// The pid file is written after the listening sockets are open.
	ready := waitFor(10*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "nginx.pid"))
		return n.proc.exited() || (err == nil && len(strings.TrimSpace(string(b))) > 0)
	})
	if !ready || n.proc.exited() {
		errlog, _ := os.ReadFile(n.errlog)
		t.Fatalf("nginx did not start (exited: %v, %v)\nstderr:\n%s\nerror log:\n%s", n.proc.exited(), n.proc.err, n.proc.stderr.String(), errlog)
	}
	return n
}

// accessLines returns the lines of the access log so far.
func (n *nginxServer) accessLines(t testing.TB) []string {
	t.Helper()
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

// stop ends nginx (fast shutdown) and returns its access log lines.
func (n *nginxServer) stop(t testing.TB) []string {
	t.Helper()
	n.proc.terminate(5 * time.Second)
	return n.accessLines(t)
}

// accessEntry is one line of the test nginx's access log (log_format hl):
// the combined format, then $remote_port $msec "$http_host" $server_addr
// $server_port.
type accessEntry struct {
	client, server netip.AddrPort
	request        string    // the request line as received (nginx's \xHH escapes undone)
	status         int       // the status nginx answered, or logged (499: client went away)
	ua, host       string    // User-Agent and Host as received, "-" if absent
	at             time.Time // $msec: when nginx logged the request, after its response
}

var accessRE = regexp.MustCompile(`^(\S+) - \S+ \[[^\]]*\] "([^"]*)" (\d{3}) \d+ "[^"]*" "([^"]*)" (\d+) (\d+)\.(\d{3}) "([^"]*)" (\S+) (\d+)$`)

// parseAccess parses an access log line of the test's nginx.
func parseAccess(line string) (accessEntry, bool) {
	m := accessRE.FindStringSubmatch(line)
	if m == nil {
		return accessEntry{}, false
	}
	cport, err1 := strconv.ParseUint(m[5], 10, 16)
	sec, err2 := strconv.ParseInt(m[6], 10, 64)
	ms, err3 := strconv.ParseInt(m[7], 10, 64)
	sport, err4 := strconv.ParseUint(m[10], 10, 16)
	caddr, err5 := netip.ParseAddr(m[1])
	saddr, err6 := netip.ParseAddr(m[9])
	status, err7 := strconv.Atoi(m[3])
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7); err != nil {
		return accessEntry{}, false
	}
	return accessEntry{
		client:  netip.AddrPortFrom(caddr.Unmap(), uint16(cport)),
		server:  netip.AddrPortFrom(saddr.Unmap(), uint16(sport)),
		request: unescapeNginx(m[2]),
		status:  status,
		ua:      unescapeNginx(m[4]),
		host:    unescapeNginx(m[8]),
		at:      time.Unix(sec, ms*int64(time.Millisecond)),
	}, true
}

// unescapeNginx undoes the escaping of nginx's access log: '"', '\\' and
// bytes below 0x20 or from 0x7f on are written \xHH.
func unescapeNginx(s string) string {
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

// checkAccessCount checks that nginx logged as many requests as httplog
// wrote lines of type reqType.
func checkAccessCount(t testing.TB, access []string, count map[string]int, reqType string) {
	t.Helper()
	if len(access) != count[reqType] {
		t.Errorf("nginx logged %d requests, httplog %d %s lines; access log:\n%s", len(access), count[reqType], reqType, strings.Join(access, "\n"))
	}
}

// finishRun ends a test's run: stops httplog and nginx, and checks the
// lines against the exchanges (requests reqType, responses respType sent
// since from), the statistics line and nginx's access log. It returns the
// lines for further checks.
func finishRun(t *testing.T, d *proc, ng *nginxServer, dir string, xs []exchange, reqType, respType string, from time.Time) []logLine {
	t.Helper()
	to := time.Now()
	stderr := stopHttplog(t, d)
	access := ng.stop(t)
	lines := readLogDir(t, dir) // also checks that each split file holds its type only
	count := expectExchanges(t, lines, from, to, exchangeGroup{xs, reqType, respType})
	checkFinalStats(t, stderr, count)
	checkAccessCount(t, access, count, reqType)
	return lines
}

// curlRequest is one curl request.
type curlRequest struct {
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

// exchange is a request as curl made it and the response it got.
type exchange struct {
	req            curlRequest
	requestLine    string // as sent
	host, ua       string // header values as sent, "-" for none
	client, server netip.AddrPort
	status         string // status line as received
	length, ctype  string // Content-Length, Content-Type; "-" for none
}

// httpURL joins a host (IPv6 in brackets), an optional port and a path.
func httpURL(addr string, port int, path string) string {
	host := addr
	if strings.Contains(addr, ":") {
		host = "[" + addr + "]"
	}
	if port != 80 {
		host += ":" + strconv.Itoa(port)
	}
	return "http://" + host + path
}

// portRequests are four requests to the server srv, one to each of its
// ports 80 and 8080 over IPv4 and IPv6: GETs with the User-Agents
// agent/4 and agent/6, a POST with a Host of its own, and a GET with
// curl's User-Agent.
func portRequests(srv linkEnd, agent string) []curlRequest {
	return []curlRequest{
		{method: "GET", url: httpURL(srv.v4, 80, "/hello.txt"), ua: agent + "/4"},
		{method: "POST", url: httpURL(srv.v4, 8080, "/api"), body: agent, host: "www.example.test"},
		{method: "GET", url: httpURL(srv.v6, 80, "/"), ua: agent + "/6"},
		{method: "GET", url: httpURL(srv.v6, 8080, "/redirect")},
	}
}

// endpoint is ADDR#PORT, as httplog writes an endpoint.
func endpoint(ap netip.AddrPort) string {
	return ap.Addr().String() + "#" + strconv.Itoa(int(ap.Port()))
}

// requestText and responseText are the lines httplog must write for the
// exchange, after the timestamp, with the given TYPE.
func (x *exchange) requestText(typ string) string {
	return fmt.Sprintf("%s %s %s %s %s %s", endpoint(x.client), endpoint(x.server), typ,
		logEscape(x.requestLine), logEscape(x.host), logEscape(x.ua))
}

func (x *exchange) responseText(typ string) string {
	return fmt.Sprintf("%s %s %s %s %s %s", endpoint(x.server), endpoint(x.client), typ,
		logEscape(x.status), logEscape(x.length), logEscape(x.ctype))
}

// logEscape is the escaping of the spec (§2), written here from its words
// rather than taken from the parser: every byte 0x00–0x1f and 0x7f, and
// every byte that is not part of valid UTF-8, becomes \xNN (lower-case
// hex), a backslash becomes \\, and nothing else changes.
func logEscape(s string) string {
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

// curlVersion is curl's own User-Agent, curl/VERSION, read once.
var curlVersion struct {
	once sync.Once
	ua   string
	err  error
}

// curlUA is curl's own User-Agent, curl/VERSION.
func curlUA(t testing.TB) string {
	t.Helper()
	curl := tool(t, "curl")
	curlVersion.once.Do(func() {
		out, err := exec.Command(curl, "--version").Output()
		f := strings.Fields(string(out))
		if err != nil || len(f) < 2 || f[0] != "curl" {
			curlVersion.err = fmt.Errorf("curl --version: %v: %q", err, out)
			return
		}
		curlVersion.ua = "curl/" + f[1]
	})
	if curlVersion.err != nil {
		t.Fatal(curlVersion.err)
	}
	return curlVersion.ua
}

// curl makes one request with curl in namespace ns (one connection,
// HTTP/1.1, no proxy, no redirect following) and returns what was sent
// and received: the endpoints from curl's -w, the response's status line
// and headers from its -D file.
func (tp *topology) curl(t testing.TB, ns string, r curlRequest) exchange {
	t.Helper()
	u, err := url.Parse(r.url)
	if err != nil {
		t.Fatal(err)
	}
	x := exchange{req: r, host: u.Host, ua: curlUA(t)}
	x.requestLine = r.method + " " + u.RequestURI() + " HTTP/1.1"
	if r.target != "" {
		x.requestLine = r.method + " " + r.target + " HTTP/1.1"
	}
	hdr := filepath.Join(t.TempDir(), "headers")
	args := append([]string{"netns", "exec", ns, tool(t, "curl"), "-q", "-sS", "-g", "--http1.1", "--noproxy", "*",
		"--max-time", "5", "-o", "/dev/null", "-D", hdr,
		"-w", "%{local_ip} %{local_port} %{remote_ip} %{remote_port}"}, curlArgs(r, &x)...)
	cmd := exec.Command(tp.ip, args...)
	cmd.Env = testEnv()
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
	x.client = curlAddrPort(t, f[0], f[1])
	x.server = curlAddrPort(t, f[2], f[3])
	readResponseHead(t, &x, hdr)
	t.Logf("curl %s %s → %s (%s → %s)", r.method, r.url, x.status, endpoint(x.client), endpoint(x.server))
	return x
}

// curlArgs are curl's options for the request r, ending in its URL; the
// Host and User-Agent they send are noted in x.
func curlArgs(r curlRequest, x *exchange) []string {
	var args []string
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
	return append(args, r.url)
}

// readResponseHead reads curl's -D file into x: the status line,
// Content-Length and Content-Type ("-" when absent).
func readResponseHead(t testing.TB, x *exchange, hdr string) {
	t.Helper()
	b := readFile(t, hdr)
	blocks := strings.Split(strings.TrimRight(b, "\r\n"), "\r\n\r\n")
	if len(blocks) != 1 {
		t.Fatalf("curl %s %s: %d responses, want 1:\n%s", x.req.method, x.req.url, len(blocks), b)
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
}

func curlAddrPort(t testing.TB, ip, port string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddr(ip)
	p, err2 := strconv.ParseUint(port, 10, 16)
	if err != nil || err2 != nil {
		t.Fatalf("curl reported the endpoint %q %q", ip, port)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p))
}
