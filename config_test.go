package main

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func envOf(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadConfig(nil, envOf(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Device != "eth0" || c.DeviceSet || !reflect.DeepEqual(c.Ports, []uint16{80}) || c.Snaplen != 1560 ||
		c.BufferMB != 8 || c.Parsers != 1 || c.Dir != "/log/httplog" || c.Split || c.AddVLAN ||
		c.Count != -1 || c.LogEvery != 10000 || c.ReadFile != "" || c.Local != nil {
		t.Errorf("defaults: %+v", c)
	}
}

// oddPorts is a -p list of n ports, no two consecutive: 1,3,5,…
func oddPorts(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = strconv.Itoa(2*i + 1)
	}
	return strings.Join(s, ",")
}

// TestConfigAccepted: values at the limits, and combinations that are
// not errors.
func TestConfigAccepted(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		env   map[string]string
		check func(c *Config) bool
	}{
		{"-cpu 010 is ten", []string{"-cpu", "010"}, nil, func(c *Config) bool { return c.Parsers == 10 }},
		{"HTTPLOG_CPUNO=010 is ten", nil, map[string]string{"HTTPLOG_CPUNO": "010"}, func(c *Config) bool { return c.Parsers == 10 }},
		{"a bad variable overridden by its flag", []string{"-cpu", "2", "-log_split=false"}, map[string]string{"HTTPLOG_CPUNO": "x", "HTTPLOG_LOG_SPLIT": "yes"},
			func(c *Config) bool { return c.Parsers == 2 && !c.Split }},
		{"-s 256", []string{"-s", "256"}, nil, func(c *Config) bool { return c.Snaplen == 256 }},
		{"-s -1", []string{"-s", "-1"}, nil, func(c *Config) bool { return c.Snaplen == 65535 }},
		{"-b 4096", []string{"-b", "4096"}, nil, func(c *Config) bool { return c.BufferMB == 4096 }},
		{"HTTPLOG_DEVICE with -r", []string{"-r", "x.pcap"}, map[string]string{"HTTPLOG_DEVICE": "eth1"}, func(c *Config) bool { return c.ReadFile == "x.pcap" }},
		{"HTTPLOG_LOG_SPLIT with -d -", []string{"-d", "-"}, map[string]string{"HTTPLOG_LOG_SPLIT": "true"}, func(c *Config) bool { return c.Dir == "-" }},
		{"-log_split with HTTPLOG_DIR=-", []string{"-log_split"}, map[string]string{"HTTPLOG_DIR": "-"}, func(c *Config) bool { return c.Split }},
		{"-log_split=false with -d -", []string{"-log_split=false", "-d", "-"}, nil, func(c *Config) bool { return !c.Split }},
		{"the most ports", []string{"-p", oddPorts(2015)}, nil, func(c *Config) bool { return len(c.Ports) == 2015 }},
		{"the most ports with -i any", []string{"-p", oddPorts(997), "-i", "any"}, nil, func(c *Config) bool { return len(c.Ports) == 997 }},
		{"a run counts as two", []string{"-p", oddPorts(2013) + ",5000,5001,5002"}, nil, func(c *Config) bool { return len(c.Ports) == 2016 }},
		{"any number of ports from a file", []string{"-p", oddPorts(5000), "-r", "x.pcap"}, nil, func(c *Config) bool { return len(c.Ports) == 5000 }},
		{"text, no redaction by default", nil, nil, func(c *Config) bool {
			return c.Format == "text" && !c.Redact && strings.Join(c.RedactParams, ",") == strings.ToLower(defaultRedactParams) && c.fileExt() == ".log"
		}},
		{"-format json", []string{"-format", "json"}, nil, func(c *Config) bool { return c.Format == "json" && c.fileExt() == ".json" }},
		{"HTTPLOG_FORMAT, HTTPLOG_REDACT", nil, map[string]string{"HTTPLOG_FORMAT": "json", "HTTPLOG_REDACT": "true"}, func(c *Config) bool {
			return c.Format == "json" && c.Redact && c.lineFormat().json && c.lineFormat().redact != nil
		}},
		{"HTTPLOG_REDACT_PARAMS replaces the list", nil, map[string]string{"HTTPLOG_REDACT_PARAMS": " Foo, bar "}, func(c *Config) bool {
			return reflect.DeepEqual(c.RedactParams, []string{"foo", "bar"}) && c.lineFormat().redact == nil
		}},
		{"-redact_params '' empties the list", []string{"-redact", "-redact_params", ""}, nil, func(c *Config) bool {
			return c.RedactParams == nil && c.lineFormat().redact != nil
		}},
		{"-metrics on every address", []string{"-metrics", ":9731"}, nil, func(c *Config) bool { return c.Metrics == ":9731" }},
		{"-metrics on any free port", nil, map[string]string{"HTTPLOG_METRICS": "[::1]:0"}, func(c *Config) bool { return c.Metrics == "[::1]:0" }},
		{"a mapped IPv4 address is the address", []string{"-local", "::ffff:10.0.0.2/128, ::ffff:192.168.0.0/112, ::ffff:10.0.0.3"}, nil, func(c *Config) bool {
			return reflect.DeepEqual(c.Local, []netip.Prefix{netip.MustParsePrefix("10.0.0.2/32"), netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("10.0.0.3/32")})
		}},
	} {
		c, err := loadConfig(tt.args, envOf(tt.env), nil)
		if err != nil || !tt.check(c) {
			t.Errorf("%s: %.200v, %v", tt.name, c, err)
		}
	}
}

// TestLocalMapped: -local ::ffff:10.0.0.2/128 matches 10.0.0.2, which
// packets carry as IPv4 or as a mapped IPv6 address.
func TestLocalMapped(t *testing.T) {
	c, err := loadConfig([]string{"-local", "::ffff:10.0.0.2/128"}, envOf(nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &localSet{prefixes: c.Local}
	for _, a := range []string{"10.0.0.2", "::ffff:10.0.0.2"} {
		if !s.contains(netip.MustParseAddr(a)) {
			t.Errorf("-local ::ffff:10.0.0.2/128 does not match %s", a)
		}
	}
	if s.contains(netip.MustParseAddr("10.0.0.3")) {
		t.Error("-local ::ffff:10.0.0.2/128 matches 10.0.0.3")
	}
}

func TestConfigEnvironmentAndFlags(t *testing.T) {
	env := envOf(map[string]string{
		"HTTPLOG_DEVICE": "ens5", "HTTPLOG_PORT": "8080, 80,8080", "HTTPLOG_SNAPLEN": "0",
		"HTTPLOG_BUFSIZE": "64", "HTTPLOG_CPUNO": "4", "HTTPLOG_DIR": "/var/log/h",
		"HTTPLOG_LOG_SPLIT": "true", "HTTPLOG_ADD_VLAN": "1", "HTTPLOG_LOG_EVERY": "5",
		"HTTPLOG_LOCAL": "10.0.0.0/8, 2001:db8::1",
	})
	c, err := loadConfig(nil, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantLocal := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::1/128")}
	if c.Device != "ens5" || !c.DeviceSet || !reflect.DeepEqual(c.Ports, []uint16{80, 8080}) || c.Snaplen != 65535 ||
		c.BufferMB != 64 || c.Parsers != 4 || c.Dir != "/var/log/h" || !c.Split || !c.AddVLAN || c.LogEvery != 5 ||
		!reflect.DeepEqual(c.Local, wantLocal) {
		t.Errorf("from the environment: %+v", c)
	}
	// An explicit flag wins over its variable.
	c, err = loadConfig([]string{"-i", "lo", "-p", "any", "-cpu", "2", "-log_split=false", "-local", "192.0.2.7"}, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Device != "lo" || c.Ports != nil || c.Parsers != 2 || c.Split || !reflect.DeepEqual(c.Local, []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}) {
		t.Errorf("flags over the environment: %+v", c)
	}
}

// TestConfigErrors: every bad value is one line naming the flag or the
// variable and the value.
// It is long because it is a table of bad inputs, each with its message.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-s", "abc"}, nil, `invalid value "abc" for flag -s: parse error`},
		{[]string{"-cpu", "0"}, nil, `invalid value 0 for flag -cpu: between 1 and 256`},
		{[]string{"-b", "0"}, nil, `invalid value 0 for flag -b: the ring needs at least 1 MB`},
		{[]string{"-s", "300000"}, nil, `invalid value 300000 for flag -s: at most 262144`},
		{[]string{"-p", "http"}, nil, `invalid value "http" for flag -p: "http" is not a port (1-65535) or any`},
		{[]string{"-p", "80,0"}, nil, `invalid value "80,0" for flag -p: "0" is not a port (1-65535) or any`},
		{[]string{"-p", "65536"}, nil, `invalid value "65536" for flag -p: "65536" is not a port (1-65535) or any`},
		{[]string{"-local", "10.0.0.300"}, nil, `invalid value "10.0.0.300" for flag -local: "10.0.0.300" is not an IP address or CIDR`},
		{[]string{"-d", ""}, nil, `invalid value "" for flag -d: a directory, or - for standard output`},
		{[]string{"-metrics", "9731"}, nil, `invalid value "9731" for flag -metrics: not HOST:PORT (127.0.0.1:9731; :9731 for every address)`},
		{[]string{"-metrics", "127.0.0.1:http"}, nil, `invalid value "127.0.0.1:http" for flag -metrics: port "http" is not a number from 0 to 65535`},
		{nil, map[string]string{"HTTPLOG_METRICS": "localhost:65536"}, `invalid value "localhost:65536" for variable HTTPLOG_METRICS (for -metrics): port "65536" is not a number from 0 to 65535`},
		{[]string{"-log_split=maybe"}, nil, `invalid boolean value "maybe" for -log_split: parse error`},
		{[]string{"-x"}, nil, `flag provided but not defined: -x`},
		{[]string{"eth1"}, nil, `unexpected argument "eth1": every setting is a flag (see -h)`},
		{nil, map[string]string{"HTTPLOG_CPUNO": "two"}, `invalid value "two" for variable HTTPLOG_CPUNO (for -cpu): not an integer`},
		{nil, map[string]string{"HTTPLOG_LOG_SPLIT": "yes"}, `invalid value "yes" for variable HTTPLOG_LOG_SPLIT (for -log_split): not true or false`},
		// A value from a variable names the variable, whoever checks it.
		{nil, map[string]string{"HTTPLOG_PORT": "80;8080"}, `invalid value "80;8080" for variable HTTPLOG_PORT (for -p): "80;8080" is not a port (1-65535) or any`},
		{nil, map[string]string{"HTTPLOG_PORT": "eighty"}, `invalid value "eighty" for variable HTTPLOG_PORT (for -p): "eighty" is not a port (1-65535) or any`},
		{nil, map[string]string{"HTTPLOG_CPUNO": "300"}, `invalid value 300 for variable HTTPLOG_CPUNO (for -cpu): between 1 and 256`},
		{nil, map[string]string{"HTTPLOG_LOCAL": "10.0.0.300"}, `invalid value "10.0.0.300" for variable HTTPLOG_LOCAL (for -local): "10.0.0.300" is not an IP address or CIDR`},
		// Decimal only, in flags as in variables: 010 is ten, 0x10 nothing.
		{[]string{"-cpu", "0x10"}, nil, `invalid value "0x10" for flag -cpu: parse error`},
		{[]string{"-c", "0x10"}, nil, `invalid value "0x10" for flag -c: parse error`},
		{[]string{"-log_every", "1_000"}, nil, `invalid value "1_000" for flag -log_every: parse error`},
		{nil, map[string]string{"HTTPLOG_CPUNO": "0x10"}, `invalid value "0x10" for variable HTTPLOG_CPUNO (for -cpu): not an integer`},
		// -s: the headers before an HTTP start line must fit.
		{[]string{"-s", "1"}, nil, `invalid value 1 for flag -s: at least 256, to hold the headers before an HTTP start line (<= 0 means 65535)`},
		{[]string{"-s", "255"}, nil, `invalid value 255 for flag -s: at least 256, to hold the headers before an HTTP start line (<= 0 means 65535)`},
		{nil, map[string]string{"HTTPLOG_SNAPLEN": "60"}, `invalid value 60 for variable HTTPLOG_SNAPLEN (for -s): at least 256, to hold the headers before an HTTP start line (<= 0 means 65535)`},
		// -b: at most 4096 MB, and no overflow on the way.
		{[]string{"-b", "4097"}, nil, `invalid value 4097 for flag -b: the ring takes at most 4096 MB`},
		{[]string{"-b", "17592186044417"}, nil, `invalid value 17592186044417 for flag -b: the ring takes at most 4096 MB`},
		{[]string{"-b", "99999999999999999999"}, nil, `invalid value "99999999999999999999" for flag -b: value out of range`},
		{nil, map[string]string{"HTTPLOG_BUFSIZE": "8192"}, `invalid value 8192 for variable HTTPLOG_BUFSIZE (for -b): the ring takes at most 4096 MB`},
		// -format, -redact, -redact_params.
		{[]string{"-format", "xml"}, nil, `invalid value "xml" for flag -format: text or json`},
		{nil, map[string]string{"HTTPLOG_FORMAT": "JSON"}, `invalid value "JSON" for variable HTTPLOG_FORMAT (for -format): text or json`},
		{nil, map[string]string{"HTTPLOG_REDACT": "on"}, `invalid value "on" for variable HTTPLOG_REDACT (for -redact): not true or false`},
		{[]string{"-redact_params", "token,,key"}, nil, `invalid value "token,,key" for flag -redact_params: an empty name in the list`},
		{nil, map[string]string{"HTTPLOG_REDACT_PARAMS": "token,a=b"}, `invalid value "token,a=b" for variable HTTPLOG_REDACT_PARAMS (for -redact_params): "a=b" holds "=", which cannot be in a parameter name`},
		// Flags that contradict each other, both on the command line.
		{[]string{"-i", "eth1", "-r", "x.pcap"}, nil, `flags -i eth1 and -r x.pcap conflict: -r reads a capture file instead of an interface`},
		{[]string{"-log_split", "-d", "-"}, nil, `flags -log_split and -d - conflict: standard output is not split into files`},
		// -p: no more ports than the kernel filter holds.
		{[]string{"-p", oddPorts(2016)}, nil, `invalid value "1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,...,4025,4027,4029,4031" for flag -p: ` +
			`2016 ports are more than the kernel filter holds on one interface: at most 2015 (a run of consecutive ports counts as two)`},
		{[]string{"-p", oddPorts(998), "-i", "any"}, nil, `invalid value "1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,...,1989,1991,1993,1995" for flag -p: ` +
			`998 ports are more than the kernel filter holds with -i any: at most 997 (a run of consecutive ports counts as two)`},
	}
	for _, tt := range tests {
		_, err := loadConfig(tt.args, envOf(tt.env), nil)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%.200q %v: error %v\nwant %s", tt.args, tt.env, err, tt.want)
		}
	}
}

// TestConfigPair: -pair and its two settings, from defaults, variables
// and flags, and their errors.
func TestConfigPair(t *testing.T) {
	c, err := loadConfig(nil, envOf(nil), nil)
	if err != nil || c.Pair || c.PairTimeout != 30*time.Second || c.PairMax != 262144 {
		t.Errorf("defaults: %v %+v", err, c)
	}
	env := envOf(map[string]string{"HTTPLOG_PAIR": "true", "HTTPLOG_PAIR_TIMEOUT": " 1m30s", "HTTPLOG_PAIR_MAX": "1000"})
	c, err = loadConfig(nil, env, nil)
	if err != nil || !c.Pair || c.PairTimeout != 90*time.Second || c.PairMax != 1000 {
		t.Errorf("from the environment: %v %+v", err, c)
	}
	c, err = loadConfig([]string{"-pair=false", "-pair_timeout", "250ms", "-pair_max", "7"}, env, nil)
	if err != nil || c.Pair || c.PairTimeout != 250*time.Millisecond || c.PairMax != 7 {
		t.Errorf("flags over the environment: %v %+v", err, c)
	}
	for _, tt := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-pair_timeout", "30"}, nil, `invalid value "30" for flag -pair_timeout: parse error`},
		{[]string{"-pair_timeout", "0s"}, nil, `invalid value 0s for flag -pair_timeout: must be positive`},
		{[]string{"-pair_timeout", "-1s"}, nil, `invalid value -1s for flag -pair_timeout: must be positive`},
		{[]string{"-pair_max", "0"}, nil, `invalid value 0 for flag -pair_max: between 1 and 16777216`},
		{[]string{"-pair_max", "16777217"}, nil, `invalid value 16777217 for flag -pair_max: between 1 and 16777216`},
		{nil, map[string]string{"HTTPLOG_PAIR": "on"}, `invalid value "on" for variable HTTPLOG_PAIR (for -pair): not true or false`},
		{nil, map[string]string{"HTTPLOG_PAIR_TIMEOUT": "30"}, `invalid value "30" for variable HTTPLOG_PAIR_TIMEOUT (for -pair_timeout): not a duration like 30s or 1m`},
		{nil, map[string]string{"HTTPLOG_PAIR_MAX": "lots"}, `invalid value "lots" for variable HTTPLOG_PAIR_MAX (for -pair_max): not an integer`},
	} {
		_, err := loadConfig(tt.args, envOf(tt.env), nil)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q %v: error %v\nwant %s", tt.args, tt.env, err, tt.want)
		}
	}
}

// TestRunExitCodes checks what a user sees: the message, and exit code 2
// for bad input, 0 for -h and -v.
func TestRunExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-cpu", "x"}, envOf(nil), &out, &errOut); code != 2 || errOut.String() != "httplog: invalid value \"x\" for flag -cpu: parse error\n" {
		t.Errorf("bad flag: exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"-v"}, envOf(nil), &out, &errOut); code != 0 || out.String() != "httplog version "+version+"\n" {
		t.Errorf("-v: exit %d, %q", code, out.String())
	}
	errOut.Reset()
	if code := run([]string{"-h"}, envOf(nil), &out, &errOut); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
	// The seed's usage, flag by flag, with its meanings; new flags added.
	for _, want := range []string{
		"Usage of ./httplog:",
		"  -add_vlan\n    \tIf true, add VLAN header",
		"  -b int\n    \tInterface buffersize (MB) (default 8)",
		"  -c int\n    \tIf >= 0, # of packets to capture before returning (default -1)",
		"  -cpu int\n    \tNumber of HTTP parsing goroutine (default 1)",
		"  -cpuprofile string\n    \tIf non-empty, write CPU profile here",
		"  -d string\n    \tWrite directory for log file",
		"  -i string\n    \tInterface to read from",
		"  -log_every int\n    \tWrite a every X packets stat",
		"  -log_split\n    \tIf true, write a split log file (CQ, CR, SQ, SR)",
		"  -p string\n    \thttp service port",
		"  -s int\n    \tSnaplen, if <= 0, use 65535 (default 1560)",
		"  -v\tIf true, show version",
		"  -r string", "  -local string",
		"  -pair\n    \tIf true, pair each response with its request",
		"  -pair_timeout duration\n    \tWith -pair, give up a request unanswered for this long (default 30s)",
		"  -pair_max int\n    \tWith -pair, connections remembered at most (memory is fixed at start) (default 262144)",
		"  -metrics string\n    \tServe Prometheus metrics (/metrics) and /healthz on this HOST:PORT",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, errOut.String())
		}
	}
}

func TestStartErrors(t *testing.T) {
	// A directory that cannot be created: a file stands in its way.
	file := t.TempDir() + "/file"
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"-r", "x.pcap", "-d", file + "/logs"}, envOf(nil), &out, &errOut)
	if code != 1 || !strings.HasPrefix(errOut.String(), "httplog: -d "+file+"/logs: ") || strings.Count(errOut.String(), "\n") != 1 {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	code = run([]string{"-i", "nosuchif0", "-d", t.TempDir()}, envOf(nil), &out, &errOut)
	if code != 1 || errOut.String() != "httplog: -i nosuchif0: no such interface\n" {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestChooseDevice(t *testing.T) {
	ifaces := []net.Interface{
		{Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
		{Name: "ens3", Flags: 0},
		{Name: "ens4", Flags: net.FlagUp},
	}
	c := &Config{Device: "eth0"}
	if got, err := chooseDevice(c, ifaces); got != "ens4" || err != nil {
		t.Errorf("fallback: %q, %v; want ens4", got, err)
	}
	c.DeviceSet = true
	if got, err := chooseDevice(c, ifaces); got != "" || err == nil || err.Error() != "-i eth0: no such interface" {
		t.Errorf("an explicit -i eth0 must stay eth0, and be missing: got %q, %v", got, err)
	}
	c = &Config{Device: "eth0"}
	if got, _ := chooseDevice(c, append(ifaces, net.Interface{Name: "eth0"})); got != "eth0" {
		t.Errorf("eth0 exists: got %q", got)
	}
	if _, err := chooseDevice(c, ifaces[:2]); err == nil {
		t.Error("no interface up: want an error")
	}
}

// TestCheck: -check reports what a start would find wrong, with the
// start's message and exit code (2 for a bad value, 1 for the rest), or
// one "configuration OK" line on standard output; it creates nothing.
// It is long because it is a table of configurations, each with its exit code and line.
func TestCheck(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file") // stands where a directory should
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	seed, err := filepath.Abs(filepath.Join("testdata", "seed.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	ok := func(summary string) string { return "httplog: configuration OK: " + summary + "\n" }
	type checkCase struct {
		name           string
		args           []string
		env            map[string]string
		code           int
		stdout, stderr string
	}
	tests := []checkCase{
		{"bad flag", []string{"-check", "-cpu", "0"}, nil, 2, "", "httplog: invalid value 0 for flag -cpu: between 1 and 256\n"},
		{"bad variable", []string{"-check"}, map[string]string{"HTTPLOG_CPUNO": "two"}, 2, "",
			"httplog: invalid value \"two\" for variable HTTPLOG_CPUNO (for -cpu): not an integer\n"},
		{"no such interface", []string{"-check", "-i", "nosuchif0", "-d", tmp}, nil, 1, "", "httplog: -i nosuchif0: no such interface\n"},
		{"no such interface, from the variable", []string{"-check", "-d", tmp}, map[string]string{"HTTPLOG_DEVICE": "nosuchif0"}, 1, "",
			"httplog: -i nosuchif0: no such interface\n"},
		{"a file in the way of the directory", []string{"-check", "-r", seed, "-d", file + "/logs"}, nil, 1, "",
			"httplog: -d " + file + "/logs: " + file + " is not a directory\n"},
		{"a file as the directory", []string{"-check", "-r", seed, "-d", file}, nil, 1, "",
			"httplog: -d " + file + ": " + file + " is not a directory\n"},
		{"no capture file", []string{"-check", "-r", tmp + "/none.pcap", "-d", tmp}, nil, 1, "",
			"httplog: -r " + tmp + "/none.pcap: open " + tmp + "/none.pcap: no such file or directory\n"},
		{"not a capture file", []string{"-check", "-r", file, "-d", tmp}, nil, 1, "",
			"httplog: -r " + file + ": not a pcap or pcapng file: too short\n"},
		{"directory to be made", []string{"-check", "-r", seed, "-d", tmp + "/new/logs", "-p", "8080,80"}, nil, 0,
			ok("file " + seed + ", ports 80,8080, snaplen 1560, 1 parser(s), lines to " + tmp + "/new/logs/http-YYYYMMDD.log (new directory)"), ""},
		{"existing directory, split", []string{"-check", "-r", seed, "-d", tmp, "-log_split", "-cpu", "2"}, nil, 0,
			ok("file " + seed + ", ports 80, snaplen 1560, 2 parser(s), lines to " + tmp + "/http-{CQ,CR,SQ,SR}-YYYYMMDD.log"), ""},
		{"standard output", []string{"-check", "-r", seed, "-s", "0"}, map[string]string{"HTTPLOG_DIR": "-"}, 0,
			ok("file " + seed + ", ports 80, snaplen 65535, 1 parser(s), lines to standard output"), ""},
		{"relative directory, made absolute", []string{"-check", "-r", seed, "-d", "no-such-dir/logs"}, nil, 0,
			ok("file " + seed + ", ports 80, snaplen 1560, 1 parser(s), lines to " + wd + "/no-such-dir/logs/http-YYYYMMDD.log (new directory)"), ""},
	}
	if os.Geteuid() == 0 {
		tests = append(tests, checkCase{"interface", []string{"-check", "-i", "lo", "-p", "any", "-d", tmp + "/live"}, nil, 0,
			ok("interface lo, ring 8 MB, ports any, snaplen 1560, 1 parser(s), lines to " + tmp + "/live/http-YYYYMMDD.log (new directory)"), ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(tt.args, envOf(tt.env), &out, &errOut)
			if code != tt.code || out.String() != tt.stdout || errOut.String() != tt.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr %q", code, out.String(), errOut.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
	// Nothing was made: not the directories, not a log file.
	if ents, _ := os.ReadDir(tmp); len(ents) != 1 || ents[0].Name() != "file" {
		t.Errorf("-check made files in %s: %v", tmp, ents)
	}
	scriptMustNotExist(t, "no-such-dir")
	// -h lists it.
	var out, errOut bytes.Buffer
	if run([]string{"-h"}, envOf(nil), &out, &errOut); !strings.Contains(errOut.String(), "  -check\n    \tIf true, check the configuration") {
		t.Errorf("-h does not list -check:\n%s", errOut.String())
	}
}

// TestShippedConf: the httplog.conf of the repository, sourced as the
// start script sources it, is a valid configuration that turns -redact on
// with the built-in list and keeps the text format.
func TestShippedConf(t *testing.T) {
	out, err := exec.Command("bash", "-c", `set -a; . ./httplog.conf; env -0`).Output()
	if err != nil {
		t.Fatalf("sourcing httplog.conf: %v", err)
	}
	vars := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "HTTPLOG_") {
			vars[k] = v
		}
	}
	c, err := loadConfig(nil, envOf(vars), nil)
	if err != nil {
		t.Fatalf("httplog.conf: %v", err)
	}
	if !c.Redact || c.Format != "text" || strings.Join(c.RedactParams, ",") != strings.ToLower(defaultRedactParams) {
		t.Errorf("httplog.conf gives -redact=%v -format %s -redact_params %v", c.Redact, c.Format, c.RedactParams)
	}
}
