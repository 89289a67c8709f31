package main

// Configuration: defaults, then HTTPLOG_* environment variables, then
// flags; then validation, with errors that name the flag and the value.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

const version = "1.0.0"

// Config is the whole configuration of one run.
type Config struct {
	Device     string         // -i, HTTPLOG_DEVICE, default "eth0"; "any" = all interfaces
	DeviceSet  bool           // -i or HTTPLOG_DEVICE was given: no fallback from eth0
	Ports      []uint16       // -p, HTTPLOG_PORT, default 80; nil = every port ("any")
	PortText   string         // -p as given, for messages
	Snaplen    int            // -s, HTTPLOG_SNAPLEN, default 1560; <= 0 means 65535
	BufferMB   int            // -b, HTTPLOG_BUFSIZE, default 8 per reader: ring size in MB, of all readers
	Parsers    int            // -cpu, HTTPLOG_CPUNO, default 1: parsing goroutines
	Readers    int            // -readers, HTTPLOG_READERS, default 1: capture sockets in one fanout group, a reader goroutine each
	Procs      int            // -procs, HTTPLOG_PROCS, default "auto" (0): processors (GOMAXPROCS), or follow the load (processors.go)
	ProcsText  string         // -procs as given
	Dir        string         // -d, HTTPLOG_DIR, default /log/httplog; "-" = standard output
	Split      bool           // -log_split, HTTPLOG_LOG_SPLIT: one file per type and day
	AddVLAN    bool           // -add_vlan, HTTPLOG_ADD_VLAN: put VLAN tags back into frames
	Count      int            // -c, default -1: stop after this many packets when >= 0
	LogEvery   int            // -log_every, HTTPLOG_LOG_EVERY, default 10000; <= 0: only at exit
	CPUProfile string         // -cpuprofile: write a CPU profile here
	Version    bool           // -v: print the version and exit
	Check      bool           // -check: check the configuration and the environment, print a summary and exit
	ReadFile   string         // -r: read this pcap/pcapng file ("-" = stdin) instead of an interface
	Local      []netip.Prefix // -local, HTTPLOG_LOCAL: local addresses; nil = the interface's
	LocalText  string         // -local as given
	User       string         // -u, HTTPLOG_USER, default "": stay the user httplog was started as
	Account    *account       // the user of -u, looked up by validate; nil without -u
	Format     string         // -format, HTTPLOG_FORMAT, default "text"; or "json"
	Redact     bool           // -redact, HTTPLOG_REDACT: hide the values of secret query parameters
	// RedactParams are the names whose values -redact hides (-redact_params,
	// HTTPLOG_REDACT_PARAMS, default defaultRedactParams); RedactText as given.
	RedactParams []string
	RedactText   string
	Metrics      string // -metrics, HTTPLOG_METRICS, default "" (off): HOST:PORT of /metrics

	Pair        bool          // -pair, HTTPLOG_PAIR: pair responses with requests, response time on CR/SR lines
	PairTimeout time.Duration // -pair_timeout, HTTPLOG_PAIR_TIMEOUT, default 30s: a request unanswered this long is given up
	PairMax     int           // -pair_max, HTTPLOG_PAIR_MAX, default 262144: connections remembered, whole process

	// governMost is set by run: the most processors the governor of a
	// live capture may add (processors.go); 0: the processors are fixed.
	governMost int

	// Location is the time zone of timestamps and file days: time.Local
	// (so TZ is honoured); tests set it.
	Location *time.Location

	// set tells, by flag name, where a value other than the default came
	// from: "" from the command line, else the name of the variable.
	// Messages about a value name its source (source); only flags given
	// together on the command line conflict (given).
	set map[string]string
}

// source names where the value of flag name came from, for messages.
func (c *Config) source(name string) string {
	if v := c.set[name]; v != "" {
		return fmt.Sprintf("variable %s (for -%s)", v, name)
	}
	return "flag -" + name
}

// given tells whether flag name was given on the command line.
func (c *Config) given(name string) bool {
	v, ok := c.set[name]
	return ok && v == ""
}

// errHelp is returned by loadConfig for -h: usage was printed, exit 0.
var errHelp = errors.New("help requested")

// readerRingMB is the ring memory of each reader when -b is not given:
// the seed's 8 MB for one reader, and as much for every further one. A
// reader's ring takes its share of the connections, but not an even
// share at every moment, and its reader is away as long as one reader's
// is: at the top rate a 2-core machine replays, two readers with 4 MB
// each lost frames in 5 of 8 passes, with 8 MB each in none of 30, as
// one reader with 8 MB (docs/BENCHMARKS.md). A -b given is the total.
const readerRingMB = 8

// maxReaders is the most -readers accepted: a reader per core of a large
// server, each with its share of the ring memory.
const maxReaders = 64

// maxSnaplen is the largest -s accepted, as in tcpdump: a bigger frame
// does not exist even with offloads.
const maxSnaplen = 262144

// minSnaplen is the smallest -s accepted. The largest headers that can
// come before an HTTP start line in a captured frame are 142 bytes:
// Ethernet 14, two VLAN tags 8, IPv4 with all its options 60 (IPv6 is 40
// plus extension headers) and TCP with all its options 60. 256 keeps
// those, the extension headers IPv6 packets commonly carry, and the first
// hundred or so bytes of the start line: a smaller snap length logs
// nothing, or lines cut to a few bytes, and counts frames as malformed.
const minSnaplen = 256

// decimal is an int flag read in base 10 only, as the variables are (the
// flag package's ints read 010 as octal and 0x10 as hexadecimal). Its
// errors are the flag package's words for its own ints.
type decimal int

func (d *decimal) String() string { return strconv.Itoa(int(*d)) }

func (d *decimal) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 0)
	if errors.Is(err, strconv.ErrRange) {
		return errors.New("value out of range")
	}
	if err != nil {
		return errors.New("parse error")
	}
	*d = decimal(n)
	return nil
}

// maxPairMax bounds -pair_max: 16 M connections are 3.9 GB of table (and
// 5.2 GB more for -format json's request texts), more than any one host
// serves at once.
const maxPairMax = 1 << 24

// loadConfig parses args over the environment (getenv) over the defaults.
// Usage goes to usage for -h. An error is one line naming the flag or
// variable and the value. It is long because it holds the list of every
// flag, one declaration a line, in the order -h prints them.
func loadConfig(args []string, getenv func(string) string, usage io.Writer) (*Config, error) {
	c := &Config{Location: time.Local, set: map[string]string{}}
	fs := flag.NewFlagSet("httplog", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, in one line

	// A variable that does not parse is an error only when its flag is not
	// given: the flag's value is the one used.
	type badVariable struct {
		flag string
		err  error
	}
	var bad []badVariable
	env := func(name, variable string) (string, bool) {
		v := getenv(variable)
		if v != "" {
			c.set[name] = variable
		}
		return v, v != ""
	}
	str := func(p *string, name, variable, def, help string) {
		if v, ok := env(name, variable); ok {
			def = v
		}
		fs.StringVar(p, name, def, help)
	}
	integer := func(p *int, name string, def int, help string) {
		*p = def
		fs.Var((*decimal)(p), name, help)
	}
	num := func(p *int, name, variable string, def int, help string) {
		if v, ok := env(name, variable); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 0)
			if err != nil {
				bad = append(bad, badVariable{name, fmt.Errorf("invalid value %q for variable %s (for -%s): not an integer", v, variable, name)})
			}
			def = int(n)
		}
		integer(p, name, def, help)
	}
	boolean := func(p *bool, name, variable string, help string) {
		def := false
		if v, ok := env(name, variable); ok {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				bad = append(bad, badVariable{name, fmt.Errorf("invalid value %q for variable %s (for -%s): not true or false", v, variable, name)})
			}
			def = b
		}
		fs.BoolVar(p, name, def, help)
	}
	duration := func(p *time.Duration, name, variable string, def time.Duration, help string) {
		if v, ok := env(name, variable); ok {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				bad = append(bad, badVariable{name, fmt.Errorf("invalid value %q for variable %s (for -%s): not a duration like 30s or 1m", v, variable, name)})
			}
			def = d
		}
		fs.DurationVar(p, name, def, help)
	}

	// The seed's flags, with their names and meanings; then the new ones.
	boolean(&c.AddVLAN, "add_vlan", "HTTPLOG_ADD_VLAN", "If true, add VLAN header")
	num(&c.BufferMB, "b", "HTTPLOG_BUFSIZE", readerRingMB, "Interface buffersize (MB)")
	integer(&c.Count, "c", -1, "If >= 0, # of packets to capture before returning")
	num(&c.Parsers, "cpu", "HTTPLOG_CPUNO", 1, "Number of HTTP parsing goroutine")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "If non-empty, write CPU profile here")
	str(&c.Dir, "d", "HTTPLOG_DIR", "/log/httplog", "Write directory for log file (- = standard output)")
	str(&c.Device, "i", "HTTPLOG_DEVICE", "eth0", "Interface to read from (any = all interfaces)")
	num(&c.LogEvery, "log_every", "HTTPLOG_LOG_EVERY", 10000, "Write a every X packets stat (<= 0: only at exit)")
	boolean(&c.Split, "log_split", "HTTPLOG_LOG_SPLIT", "If true, write a split log file (CQ, CR, SQ, SR)")
	str(&c.PortText, "p", "HTTPLOG_PORT", "80", "http service port (a comma-separated list, or any)")
	num(&c.Snaplen, "s", "HTTPLOG_SNAPLEN", 1560, "Snaplen, if <= 0, use 65535")
	num(&c.Readers, "readers", "HTTPLOG_READERS", 1, "Number of capture sockets and reader goroutines, 1 to 64, in one fanout group sharing the -b ring memory (without -b: 8 MB each)")
	str(&c.ProcsText, "procs", "HTTPLOG_PROCS", "auto", "Processors running httplog (GOMAXPROCS): auto (a live capture starts on 1 and adds up to the larger of -cpu and -readers under load) or a number")
	fs.BoolVar(&c.Version, "v", false, "If true, show version")
	fs.BoolVar(&c.Check, "check", false, "If true, check the configuration, log directory and interface without capturing, and exit")
	fs.StringVar(&c.ReadFile, "r", "", "Read packets from this pcap or pcapng file (- = stdin) instead of an interface")
	str(&c.LocalText, "local", "HTTPLOG_LOCAL", "", "Local addresses or CIDRs, comma-separated, for CQ/CR/SQ/SR (default: the interface's)")
	boolean(&c.Pair, "pair", "HTTPLOG_PAIR", "If true, pair each response with its request and add the response time to CR/SR lines")
	duration(&c.PairTimeout, "pair_timeout", "HTTPLOG_PAIR_TIMEOUT", 30*time.Second, "With -pair, give up a request unanswered for this long")
	num(&c.PairMax, "pair_max", "HTTPLOG_PAIR_MAX", 262144, "With -pair, connections remembered at most (memory is fixed at start)")
	str(&c.User, "u", "HTTPLOG_USER", "", "If non-empty, run as this user once the capture and the log directory are open (start as root)")
	str(&c.Format, "format", "HTTPLOG_FORMAT", "text", "Log format: text (one line per HTTP start) or json (one ECS JSON object per line, in .json files)")
	boolean(&c.Redact, "redact", "HTTPLOG_REDACT", "If true, write the values of the -redact_params query parameters, and user:password@ of absolute URIs, as REDACTED")
	str(&c.RedactText, "redact_params", "HTTPLOG_REDACT_PARAMS", defaultRedactParams, "Query parameter names (comma-separated, any case) whose values -redact hides")
	str(&c.Metrics, "metrics", "HTTPLOG_METRICS", "", "Serve Prometheus metrics (/metrics) and /healthz on this HOST:PORT, e.g. 127.0.0.1:9731 (default off)")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			fs.SetOutput(&b)
			fs.PrintDefaults()
			// The flag package calls a flag type of our own "value": the
			// only ones are decimal ints.
			fmt.Fprint(usage, "Usage of ./httplog:\n", strings.ReplaceAll(b.String(), " value\n", " int\n"))
			return nil, errHelp
		}
		return nil, err // the flag package's text names the flag and value
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every setting is a flag (see -h)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = "" })
	for _, v := range bad {
		if !c.given(v.flag) {
			return nil, v.err
		}
	}
	_, c.DeviceSet = c.set["i"]
	return c, c.validate()
}

// validate checks values and derives Ports, Snaplen and Local. An error
// names the flag, or the variable the value came from.
// It is long because it is the list of every check, one flag after the
// other.
func (c *Config) validate() error {
	var err error
	if c.Ports, err = parsePorts(c.PortText); err != nil {
		return fmt.Errorf("invalid value %q for %s: %v", c.PortText, c.source("p"), err)
	}
	if c.Snaplen <= 0 {
		c.Snaplen = 65535
	}
	if c.Snaplen < minSnaplen {
		return fmt.Errorf("invalid value %d for %s: at least %d, to hold the headers before an HTTP start line (<= 0 means 65535)", c.Snaplen, c.source("s"), minSnaplen)
	}
	if c.Snaplen > maxSnaplen {
		return fmt.Errorf("invalid value %d for %s: at most %d", c.Snaplen, c.source("s"), maxSnaplen)
	}
	if c.BufferMB < 1 {
		return fmt.Errorf("invalid value %d for %s: the ring needs at least 1 MB", c.BufferMB, c.source("b"))
	}
	if c.BufferMB > maxRingMB {
		return fmt.Errorf("invalid value %d for %s: the ring takes at most %d MB", c.BufferMB, c.source("b"), maxRingMB)
	}
	if c.Parsers < 1 || c.Parsers > 256 {
		return fmt.Errorf("invalid value %d for %s: between 1 and 256", c.Parsers, c.source("cpu"))
	}
	if c.Readers < 1 || c.Readers > maxReaders {
		return fmt.Errorf("invalid value %d for %s: between 1 and %d", c.Readers, c.source("readers"), maxReaders)
	}
	if c.Procs, err = parseProcs(c.ProcsText); err != nil {
		return fmt.Errorf("invalid value %q for %s: %v", c.ProcsText, c.source("procs"), err)
	}
	if c.Dir == "" {
		return fmt.Errorf("invalid value \"\" for %s: a directory, or - for standard output", c.source("d"))
	}
	if c.Dir != "-" {
		// Absolute from here on: the messages and -check name the
		// directory that is written, wherever httplog was started.
		if abs, err := filepath.Abs(c.Dir); err == nil {
			c.Dir = abs
		}
	}
	if c.Device == "" && c.ReadFile == "" {
		return fmt.Errorf("invalid value \"\" for %s: an interface name, or any", c.source("i"))
	}
	// Only flags given together conflict: a variable (from a daemon's
	// configuration file) gives way to a flag that makes it moot.
	if c.given("i") && c.given("r") {
		return fmt.Errorf("flags -i %s and -r %s conflict: -r reads a capture file instead of an interface", c.Device, c.ReadFile)
	}
	if c.given("log_split") && c.Split && c.given("d") && c.Dir == "-" {
		return errors.New("flags -log_split and -d - conflict: standard output is not split into files")
	}
	if c.ReadFile != "" && c.Readers > 1 {
		if c.given("readers") {
			return fmt.Errorf("flags -readers %d and -r %s conflict: a capture file is read by one reader", c.Readers, c.ReadFile)
		}
		c.Readers = 1
	}
	if _, ok := c.set["b"]; !ok {
		c.BufferMB = readerRingMB * c.Readers
	}
	if c.ReadFile == "" {
		if g, err := ringFor(c.Snaplen, c.BufferMB, c.Readers); err != nil {
			return fmt.Errorf("invalid value %d for %s with %s %d: each reader's ring would get %d KiB, less than one block of %d KiB (for -s %d)",
				c.BufferMB, c.source("b"), c.source("readers"), c.Readers, c.BufferMB<<10/c.Readers, g.blockSize>>10, c.Snaplen)
		}
		if err := checkFilterSize(c.Ports, c.Device); err != nil {
			return fmt.Errorf("invalid value %q for %s: %v", shorten(c.PortText), c.source("p"), err)
		}
	}
	if c.PairTimeout <= 0 {
		return fmt.Errorf("invalid value %s for %s: must be positive", c.PairTimeout, c.source("pair_timeout"))
	}
	if c.PairMax < 1 || c.PairMax > maxPairMax {
		return fmt.Errorf("invalid value %d for %s: between 1 and %d", c.PairMax, c.source("pair_max"), maxPairMax)
	}
	if c.Local, err = parseLocal(c.LocalText); err != nil {
		return fmt.Errorf("invalid value %q for %s: %v", c.LocalText, c.source("local"), err)
	}
	if c.User != "" {
		if c.Account, err = lookupAccount(c.User); err != nil {
			return fmt.Errorf("invalid value %q for %s: %v", c.User, c.source("u"), err)
		}
	}
	if c.Format != "text" && c.Format != "json" {
		return fmt.Errorf("invalid value %q for %s: text or json", c.Format, c.source("format"))
	}
	if c.RedactParams, err = parseRedactParams(c.RedactText); err != nil {
		return fmt.Errorf("invalid value %q for %s: %v", shorten(c.RedactText), c.source("redact_params"), err)
	}
	if err := checkMetricsAddr(c.Metrics); err != nil {
		return fmt.Errorf("invalid value %q for %s: %v", c.Metrics, c.source("metrics"), err)
	}
	return nil
}

// checkMetricsAddr checks the form of -metrics: empty (off), or HOST:PORT
// with a decimal port (0: any free port, named in the start message).
func checkMetricsAddr(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("not HOST:PORT (127.0.0.1:9731; :9731 for every address)")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

// fileExt is the extension of the log files: the format's name, so that
// a change of format never mixes two formats in one file.
func (c *Config) fileExt() string {
	if c.Format == "json" {
		return ".json"
	}
	return ".log"
}

// lineFormat is the format and redaction of -format, -redact and
// -redact_params.
func (c *Config) lineFormat() lineFormat {
	f := lineFormat{json: c.Format == "json"}
	if c.Redact {
		f.redact = newRedactor(c.RedactParams)
	}
	return f
}

// shorten cuts a long list in the middle, at commas, so that a message
// about it stays readable on one line.
func shorten(s string) string {
	if len(s) <= 60 {
		return s
	}
	head, tail := s[:40], s[len(s)-20:]
	if i := strings.LastIndexByte(head, ','); i >= 0 {
		head = head[:i+1]
	}
	if i := strings.IndexByte(tail, ','); i >= 0 {
		tail = tail[i:]
	}
	return head + "..." + tail
}

// parsePorts reads "80", "80,8080" or "any" (nil: every port).
func parsePorts(s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "any" {
		return nil, nil
	}
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port (1-65535) or any", f)
		}
		if !slices.Contains(ports, uint16(n)) {
			ports = append(ports, uint16(n))
		}
	}
	slices.Sort(ports)
	return ports, nil
}

// parseLocal reads a comma-separated list of addresses and CIDRs.
func parseLocal(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if p, err := netip.ParsePrefix(f); err == nil {
			p = p.Masked()
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				// Addresses are compared unmapped: ::ffff:10.0.0.0/104
				// is 10.0.0.0/8.
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// pickDevice sets cfg.Device to the interface a live capture uses
// (chooseDevice over this host's interfaces).
func pickDevice(cfg *Config) error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return err
	}
	cfg.Device, err = chooseDevice(cfg, ifaces)
	return err
}

// chooseDevice applies the fallback of the spec: when -i was not given
// and eth0 does not exist, the first up, non-loopback interface is used.
// An interface named explicitly must exist.
func chooseDevice(c *Config, ifaces []net.Interface) (string, error) {
	if c.Device == "any" {
		return c.Device, nil
	}
	for _, i := range ifaces {
		if i.Name == c.Device {
			return c.Device, nil
		}
	}
	if c.DeviceSet {
		return "", fmt.Errorf("-i %s: no such interface", c.Device)
	}
	for _, i := range ifaces {
		if i.Flags&net.FlagUp != 0 && i.Flags&net.FlagLoopback == 0 {
			return i.Name, nil
		}
	}
	return "", fmt.Errorf("-i %s: no such interface, and no other interface is up", c.Device)
}

// checkConfig is -check: it looks for what would stop a start after the
// configuration is loaded (the log directory, the -metrics address, the
// interface and the permission to capture on it, or the capture file) in
// the order a start meets them, with the same messages, but opens no
// capture socket and creates nothing. It returns a one-line summary of
// what would run, which ends in "lines to " and destination(cfg), then
// " (new directory)" if
// the directory does not exist yet: start_httplog.sh reads it from there.
// It is long because it walks the steps of a start in their order.
// With -u it becomes that user, as a start would, to check the directory
// as the user: the process can never be root again (httplog -check exits
// next; tests run it as a binary).
func checkConfig(cfg *Config) (string, error) {
	missing := false
	if cfg.Account != nil {
		if err := cfg.Account.startedAsRoot(); err != nil {
			return "", err
		}
	}
	if cfg.Dir != "-" {
		var err error
		if missing, err = checkDir(cfg.Dir, false); err != nil {
			return "", err
		}
	}
	// The -metrics address is bound and let go at once: another program
	// may take it before the start, but one that holds it now is found.
	m, err := listenMetrics(cfg.Metrics)
	if err != nil {
		return "", err
	}
	m.close()
	var b strings.Builder
	if cfg.ReadFile != "" {
		// Only a regular file is opened: opening a pipe would block, or
		// take the packets of whoever writes to it.
		if fi, err := os.Stat(cfg.ReadFile); cfg.ReadFile != "-" && (err != nil || fi.Mode().IsRegular()) {
			src, err := openFile(cfg.ReadFile)
			if err != nil {
				return "", fmt.Errorf("-r %s: %v", cfg.ReadFile, err)
			}
			src.close()
		}
		fmt.Fprintf(&b, "file %s", cfg.ReadFile)
	} else {
		if err := pickDevice(cfg); err != nil {
			return "", err
		}
		if err := checkCapturePermission(cfg.Device); err != nil {
			return "", err
		}
		if err := checkRingMemory(cfg.BufferMB, 0); err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "interface %s, ring %d MB", cfg.Device, cfg.BufferMB)
		if cfg.Readers > 1 {
			fmt.Fprintf(&b, " split among %d readers", cfg.Readers)
		}
	}
	if a := cfg.Account; a != nil {
		// As the start does after opening the capture: become the user,
		// then check the directory as the user.
		if err := becomeUser(a); err != nil {
			return "", err
		}
		if cfg.Dir != "-" {
			if err := checkWritableAs(a, cfg.Dir, false); err != nil {
				return "", err
			}
		}
		fmt.Fprintf(&b, ", %s", a)
	}
	fmt.Fprintf(&b, ", ports %s, snaplen %d, %d parser(s)%s, ", portText(cfg.Ports), cfg.Snaplen, cfg.Parsers, formatText(cfg))
	if cfg.Metrics != "" {
		fmt.Fprintf(&b, "metrics on %s, ", cfg.Metrics)
	}
	fmt.Fprintf(&b, "lines to %s", destination(cfg))
	if missing {
		b.WriteString(" (new directory)")
	}
	return b.String(), nil
}
