// Command httplog watches a network interface and writes one text line (or
// one JSON object) for every TCP packet that starts an HTTP request or
// response, into daily log files, without reassembling TCP: each packet is
// judged on its own bytes.
//
// Usage:
//
//	httplog [flags]
//
// Flags (each also set by the environment variable named; a flag wins):
//
//	-i string       interface to read from, or any (HTTPLOG_DEVICE, default eth0)
//	-p string       HTTP port(s): 80, 80,8080, or any; at most 2015 (HTTPLOG_PORT, default 80)
//	-s int          bytes captured per packet, 256 to 262144; <= 0 means 65535 (HTTPLOG_SNAPLEN, default 1560)
//	-b int          ring buffer size in MB, 1 to 4096 (HTTPLOG_BUFSIZE, default 8)
//	-cpu int        HTTP parsing goroutines (HTTPLOG_CPUNO, default 1)
//	-readers int    capture sockets, 1 to 64, in one fanout group, each with its
//	                reader goroutine and its share of -b (HTTPLOG_READERS, default 1)
//	-procs p        processors (GOMAXPROCS): auto, or a number, 1 to 256; with
//	                auto a live capture starts on 1 and adds up to the larger of
//	                -cpu and -readers (at most the CPUs) while the load needs
//	                them (HTTPLOG_PROCS, default auto)
//	-d string       log directory, or - for standard output (HTTPLOG_DIR, default /log/httplog)
//	-log_split      four files a day: CQ, CR, SQ, SR (HTTPLOG_LOG_SPLIT)
//	-add_vlan       put VLAN tags back into frames (HTTPLOG_ADD_VLAN)
//	-c int          if >= 0, stop after this many packets (default -1)
//	-log_every int  statistics line every this many packets (HTTPLOG_LOG_EVERY, default 10000)
//	-cpuprofile f   write a CPU profile to f
//	-r file         read a pcap or pcapng file (- = stdin) instead of an interface
//	-local list     local addresses/CIDRs for CQ/CR/SQ/SR (HTTPLOG_LOCAL)
//	-pair           end CR/SR lines with the response time (HTTPLOG_PAIR)
//	-pair_timeout d give up a request unanswered this long (HTTPLOG_PAIR_TIMEOUT, default 30s)
//	-pair_max int   connections remembered for -pair (HTTPLOG_PAIR_MAX, default 262144)
//	-u user         once the capture and the log directory are open, run as
//	                this user, on every thread, without root (HTTPLOG_USER)
//	-format f       text, or json: one ECS-named JSON object per line, in
//	                http-YYYYMMDD.json files (HTTPLOG_FORMAT, default text)
//	-redact         write the values of secret query parameters, and the
//	                user:password@ of absolute URIs, as REDACTED (HTTPLOG_REDACT)
//	-redact_params list  the parameter names -redact hides, any case
//	                (HTTPLOG_REDACT_PARAMS, default password,token,key,sig,… in README.md)
//	-metrics addr   serve Prometheus metrics (/metrics) and /healthz on
//	                HOST:PORT, e.g. 127.0.0.1:9731 (HTTPLOG_METRICS, default off)
//	-v              print the version and exit
//	-check          check the configuration, the log directory and the interface
//	                (creating and capturing nothing), print "configuration OK: ..."
//	                and exit 0; or print the error a start would, and exit 2 for a
//	                bad value, 1 for another problem
//
// A line reads
//
//	2019-09-01 14:16:51.002 223.39.188.71#50905 10.140.0.2#80 CQ GET / HTTP/1.1 host user-agent
//
// and README.md describes every field (of the JSON events too), the files,
// signals and statistics.
//
// The pipeline: one reader goroutine (-readers: one per socket of a fanout
// group, which the kernel gives whole connections by a symmetric hash)
// decodes frames in place and copies the payloads of HTTP starts into
// batches (capture.go, ring.go) → bounded channels → -cpu parser
// goroutines, chosen by a symmetric hash of the connection so that its
// lines stay in order (parser.go) → one writer goroutine that owns the
// files (logger.go). Every counter is in one registry (counters.go), which
// the statistics line and -metrics's /metrics read.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole command: it returns the exit code, 2 for bad flags and
// variables, 1 for failures to start or to read, 0 otherwise.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(args, getenv, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "httplog: %v\n", err)
		return 2
	}
	if cfg.Version {
		fmt.Fprintf(stdout, "httplog version %s\n", version)
		return 0
	}
	if cfg.Check {
		summary, err := checkConfig(cfg)
		if err != nil {
			fmt.Fprintf(stderr, "httplog: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "httplog: configuration OK: %s\n", summary)
		return 0
	}
	// The processors the goroutines run on (processors.go). An explicit
	// GOMAXPROCS in the environment wins, fixed.
	if getenv("GOMAXPROCS") == "" {
		start, most := cfg.processors(runtime.NumCPU())
		runtime.GOMAXPROCS(start)
		cfg.governMost = most
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reopen := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s == syscall.SIGHUP {
					select {
					case reopen <- struct{}{}:
					default: // one is pending already
					}
					continue
				}
				cancel()
			case <-ctx.Done():
				return
			}
		}
	}()
	return serve(ctx, cfg, stdout, stderr, reopen)
}

// Pipeline sizes.
const (
	// batchSize packets go over a channel at once: a channel operation
	// costs about as much as parsing a packet, and 128 of them make it
	// negligible while a batch still fits in L2 cache.
	batchSize = 128
	// batchBytes caps the payload bytes of one batch (with -s 65535, 128
	// full payloads would be 8 MiB).
	batchBytes = 256 << 10
	// queueDepth batches wait for each parser, and for the writer: enough
	// to ride out a slow write, small enough that a stuck writer pushes
	// back to the kernel ring within milliseconds.
	queueDepth = 8
	// maxBatchDelay: a partly filled batch is sent on after this long, so
	// lines reach the files promptly on a quiet link.
	maxBatchDelay = int64(100 * time.Millisecond)
	// statsAtLeastEvery: with -log_every > 0, the statistics line is also
	// written when this long has passed without one.
	statsAtLeastEvery = time.Minute
)

// serve runs the pipeline until the source ends or ctx is cancelled:
// source → -readers reader goroutines → -cpu parser goroutines → writer
// goroutine. Each stage closes the queue of the next when its last
// goroutine has returned, so serve waits only for the readers and the
// writer.
func serve(ctx context.Context, cfg *Config, stdout, stderr io.Writer, reopen <-chan struct{}) int {
	logger := log.New(stderr, "httplog: ", log.LstdFlags|log.Lmsgprefix)
	o, err := openAll(cfg, logger)
	if err != nil {
		fmt.Fprintf(stderr, "httplog: %v\n", err)
		return 1
	}
	defer o.close()
	localPtr := followLocals(ctx, cfg, o.locals, logger)

	reg := &registry{pair: cfg.Pair}
	wc := writerConfig{dir: cfg.Dir, split: cfg.Split, ext: cfg.fileExt(), out: stdout, log: logger, lock: o.lock}
	lines, lineFree, written := startWriter(wc, reg.newSet(), cfg.Parsers, reopen)
	// Enough packet batches that a reader never waits for one while the
	// others hold theirs: for each parser, a full queue, one in its hands,
	// and one being filled by each reader.
	pktFree := newPacketBatches(cfg.Parsers * (queueDepth + 1 + len(o.srcs)))
	pairs := newPairWorkers(cfg, reg) // nil without -pair
	queues := startParsers(cfg.Parsers, reg, localPtr, cfg.Location, cfg.lineFormat(), pktFree, lines, lineFree, pairs)
	report := func() { logger.Print(statsLine(reg.read(), cfg.Pair)) }
	procs, stopGovernor := startGovernor(ctx, cfg.governMost, o.srcs, reg, queues, logger)
	defer stopGovernor()
	read := startReaders(ctx, o.srcs, readerSettings(cfg, report), queues, pktFree, reg)
	o.metrics.serve(reg, runInfo(o.srcs, cfg.Parsers), logger)
	logger.Printf("httplog %s started: %s, ports %s, snaplen %d, %d reader(s), %d parser(s) on %s%s, lines to %s%s%s%s",
		version, o.srcs[0].describe(), portText(cfg.Ports), cfg.Snaplen, len(o.srcs), cfg.Parsers, procs,
		formatText(cfg), destination(cfg), pairText(cfg, pairs), o.as, o.metrics.describe())

	readErr := <-read
	<-written
	final := reg.read()
	logger.Print(statsLine(final, cfg.Pair))
	switch {
	case readErr != nil:
		logger.Printf("stopped: %v", readErr)
		return 1
	case final[cLinesLost] > 0 && cfg.ReadFile != "":
		// A file read to its end with lines missing from the files is a
		// failure; a live capture stopped by a signal exits 0 (SPEC
		// section 6), its statistics line shows the loss.
		logger.Printf("%d lines could not be written (lines_lost): exit 1", final[cLinesLost])
		return 1
	}
	return 0
}

// opened is what httplog opens before it starts: all that needs root.
type opened struct {
	lock        *os.File       // the log directory's, nil with -d -
	metrics     *metricsServer // nil without -metrics
	srcs        []packetSource // one per reader
	locals      *localSet      // this host's addresses, first reading
	stopProfile func()         // nil without -cpuprofile
	as          string         // ", as user …" with -u, for the start message
}

// openAll opens, in order, the log directory (made, checked, locked), the
// metrics listener, the packet sources and the CPU profile; then, with -u,
// it becomes that user for good. What it opened is closed on an error.
func openAll(cfg *Config, logger *log.Logger) (*opened, error) {
	o := &opened{}
	fail := func(err error) (*opened, error) {
		closeSources(o.srcs)
		o.close()
		return nil, err
	}
	var err error
	if o.lock, err = prepareDirFor(cfg.Account, cfg.Dir); err != nil {
		return fail(err)
	}
	if o.metrics, err = listenMetrics(cfg.Metrics); err != nil {
		return fail(err)
	}
	if o.srcs, o.locals, err = openSource(cfg, logger); err != nil {
		return fail(err)
	}
	if cfg.CPUProfile != "" {
		if o.stopProfile, err = startProfile(cfg.CPUProfile); err != nil {
			return fail(err)
		}
	}
	// The metrics listener is open too, so a port below 1024 can be had:
	// from here on httplog is the user of -u.
	if o.as, err = switchUser(cfg.Account, cfg.Dir); err != nil {
		return fail(err)
	}
	return o, nil
}

// close ends what openAll opened but the sources, which their readers
// close.
func (o *opened) close() {
	if o.stopProfile != nil {
		o.stopProfile()
	}
	o.metrics.close()
	o.lock.Close() // held until the writer is done; the kernel drops it if httplog dies
}

// readerSettings is what the readers take of the configuration.
func readerSettings(cfg *Config, report func()) readerConfig {
	rc := readerConfig{ports: cfg.Ports, limit: int64(cfg.Count), report: report, pair: cfg.Pair}
	if cfg.LogEvery > 0 {
		// A quiet host gets a line a minute all the same, so that the
		// latest statistics (start script's status) are never stale.
		rc.logEvery, rc.reportEvery = uint64(cfg.LogEvery), statsAtLeastEvery
	}
	return rc
}

// startProfile starts the CPU profile of -cpuprofile; stop ends it.
func startProfile(name string) (stop func(), err error) {
	f, err := os.Create(name)
	if err == nil {
		if err = pprof.StartCPUProfile(f); err != nil {
			f.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile %s: %v", name, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func portText(ports []uint16) string {
	if ports == nil {
		return "any"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

func destination(cfg *Config) string {
	switch {
	case cfg.Dir == "-":
		return "standard output"
	case cfg.Split:
		return cfg.Dir + "/http-{CQ,CR,SQ,SR}-YYYYMMDD" + cfg.fileExt()
	}
	return cfg.Dir + "/http-YYYYMMDD" + cfg.fileExt()
}

// formatText is the start message's and -check's word on the format and
// redaction, before "lines to": empty for the default (text, as sent).
func formatText(cfg *Config) string {
	s := ""
	if cfg.Format == "json" {
		s = ", JSON events"
	}
	if cfg.Redact {
		s += fmt.Sprintf(", redacting %d query parameter names and user:password@", len(cfg.RedactParams))
	}
	return s
}

// runInfo is what /metrics shows of the run's sources and parsers.
func runInfo(srcs []packetSource, parsers int) metricsInfo {
	info := metricsInfo{readers: len(srcs), parsers: parsers}
	for _, s := range srcs {
		if l, ok := s.(*liveSource); ok {
			info.ringBytes += l.g.blockSize * l.g.numBlocks
		}
	}
	return info
}
