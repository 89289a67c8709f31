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
	BufferMB   int            // -b, HTTPLOG_BUFSIZE, default 8: ring size in MB
	Parsers    int            // -cpu, HTTPLOG_CPUNO, default 1: parsing goroutines
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

	// Location is the time zone of timestamps and file days: time.Local
	// (so TZ is honoured); tests set it.
	Location *time.Location
}

// errHelp is returned by loadConfig for -h: usage was printed, exit 0.
var errHelp = errors.New("help requested")

// maxSnaplen is the largest -s accepted, as in tcpdump: a bigger frame
// does not exist even with offloads.
const maxSnaplen = 262144

// loadConfig parses args over the environment (getenv) over the defaults.
// Usage goes to usage for -h. An error is one line naming the flag or
// variable and the value.
func loadConfig(args []string, getenv func(string) string, usage io.Writer) (*Config, error) {
	c := &Config{Location: time.Local}
	fs := flag.NewFlagSet("httplog", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, in one line

	var envErr error
	env := func(name string) (string, bool) {
		v := getenv(name)
		return v, v != ""
	}
	str := func(p *string, name, variable, def, help string) {
		if v, ok := env(variable); ok {
			def = v
		}
		fs.StringVar(p, name, def, help)
	}
	num := func(p *int, name, variable string, def int, help string) {
		if v, ok := env(variable); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("invalid value %q for variable %s (for -%s): not an integer", v, variable, name)
			}
			def = n
		}
		fs.IntVar(p, name, def, help)
	}
	boolean := func(p *bool, name, variable string, help string) {
		def := false
		if v, ok := env(variable); ok {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil && envErr == nil {
				envErr = fmt.Errorf("invalid value %q for variable %s (for -%s): not true or false", v, variable, name)
			}
			def = b
		}
		fs.BoolVar(p, name, def, help)
	}

	// The seed's flags, with their names and meanings; then the new ones.
	boolean(&c.AddVLAN, "add_vlan", "HTTPLOG_ADD_VLAN", "If true, add VLAN header")
	num(&c.BufferMB, "b", "HTTPLOG_BUFSIZE", 8, "Interface buffersize (MB)")
	fs.IntVar(&c.Count, "c", -1, "If >= 0, # of packets to capture before returning")
	num(&c.Parsers, "cpu", "HTTPLOG_CPUNO", 1, "Number of HTTP parsing goroutine")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "If non-empty, write CPU profile here")
	str(&c.Dir, "d", "HTTPLOG_DIR", "/log/httplog", "Write directory for log file (- = standard output)")
	str(&c.Device, "i", "HTTPLOG_DEVICE", "eth0", "Interface to read from (any = all interfaces)")
	num(&c.LogEvery, "log_every", "HTTPLOG_LOG_EVERY", 10000, "Write a every X packets stat (<= 0: only at exit)")
	boolean(&c.Split, "log_split", "HTTPLOG_LOG_SPLIT", "If true, write a split log file (CQ, CR, SQ, SR)")
	str(&c.PortText, "p", "HTTPLOG_PORT", "80", "http service port (a comma-separated list, or any)")
	num(&c.Snaplen, "s", "HTTPLOG_SNAPLEN", 1560, "Snaplen, if <= 0, use 65535")
	fs.BoolVar(&c.Version, "v", false, "If true, show version")
	fs.BoolVar(&c.Check, "check", false, "If true, check the configuration, log directory and interface without capturing, and exit")
	fs.StringVar(&c.ReadFile, "r", "", "Read packets from this pcap or pcapng file (- = stdin) instead of an interface")
	str(&c.LocalText, "local", "HTTPLOG_LOCAL", "", "Local addresses or CIDRs, comma-separated, for CQ/CR/SQ/SR (default: the interface's)")

	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(usage, "Usage of ./httplog:")
			fs.SetOutput(usage)
			fs.PrintDefaults()
			return nil, errHelp
		}
		return nil, err // the flag package's text names the flag and value
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every setting is a flag (see -h)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "i" {
			c.DeviceSet = true
		}
	})
	if _, ok := env("HTTPLOG_DEVICE"); ok {
		c.DeviceSet = true
	}
	return c, c.validate()
}

// validate checks values and derives Ports, Snaplen and Local.
func (c *Config) validate() error {
	var err error
	if c.Ports, err = parsePorts(c.PortText); err != nil {
		return fmt.Errorf("invalid value %q for flag -p: %v", c.PortText, err)
	}
	if c.Snaplen <= 0 {
		c.Snaplen = 65535
	}
	if c.Snaplen > maxSnaplen {
		return fmt.Errorf("invalid value %d for flag -s: at most %d", c.Snaplen, maxSnaplen)
	}
	if c.BufferMB < 1 {
		return fmt.Errorf("invalid value %d for flag -b: the ring needs at least 1 MB", c.BufferMB)
	}
	if c.Parsers < 1 || c.Parsers > 256 {
		return fmt.Errorf("invalid value %d for flag -cpu: between 1 and 256", c.Parsers)
	}
	if c.Dir == "" {
		return errors.New("invalid value \"\" for flag -d: a directory, or - for standard output")
	}
	if c.Dir != "-" {
		// Absolute from here on: the messages and -check name the
		// directory that is written, wherever httplog was started.
		if abs, err := filepath.Abs(c.Dir); err == nil {
			c.Dir = abs
		}
	}
	if c.Device == "" && c.ReadFile == "" {
		return errors.New("invalid value \"\" for flag -i: an interface name, or any")
	}
	if c.Local, err = parseLocal(c.LocalText); err != nil {
		return fmt.Errorf("invalid value %q for flag -local: %v", c.LocalText, err)
	}
	return nil
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
			out = append(out, p.Masked())
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
// configuration is loaded (the log directory, the interface and the
// permission to capture on it, or the capture file) in the order a start
// meets them, with the same messages, but opens no capture socket and
// creates nothing. It returns a one-line summary of what would run, which
// ends in "lines to " and destination(cfg), then " (new directory)" if
// the directory does not exist yet: start_httplog.sh reads it from there.
func checkConfig(cfg *Config) (string, error) {
	missing := false
	if cfg.Dir != "-" {
		var err error
		if missing, err = checkDir(cfg.Dir, false); err != nil {
			return "", err
		}
	}
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
		fmt.Fprintf(&b, "interface %s, ring %d MB", cfg.Device, cfg.BufferMB)
	}
	fmt.Fprintf(&b, ", ports %s, snaplen %d, %d parser(s), lines to %s", portText(cfg.Ports), cfg.Snaplen, cfg.Parsers, destination(cfg))
	if missing {
		b.WriteString(" (new directory)")
	}
	return b.String(), nil
}
