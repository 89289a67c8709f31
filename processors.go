package main

// How many processors (GOMAXPROCS) run httplog's goroutines, and, for a
// live capture with -procs auto, a governor that follows the load.
//
// Why not always as many as -cpu and -readers ask: a goroutine made
// runnable (a batch sent to a parser, a ring block handed over) while
// another processor is idle wakes a thread for that processor, which
// spins, steals the goroutine from the processor that readied it, and
// goes back to sleep when it is done. A capture at a web server's packet
// rates is a stream of such short bursts: with two processors at 200k
// packets/s, two readers made three times the context switches of one
// reader on one processor and cost about a quarter more CPU a packet;
// on one processor the same two readers cost about a tenth more than one
// (docs/BENCHMARKS.md, "Issue 12: processors that follow the load"). So a live
// capture starts on one processor, and the governor adds processors
// when the load needs them and gives them back when it has passed.

import (
	"context"
	"fmt"
	"log"
	"math"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// parseProcs reads -procs: "auto" (0) or a number of processors.
func parseProcs(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "auto" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxProcs {
		return 0, fmt.Errorf("auto, or a number of processors from 1 to %d", maxProcs)
	}
	return n, nil
}

// maxProcs is the most -procs accepted, as -cpu's most.
const maxProcs = 256

// processors returns the processors httplog starts on and the most it
// may use. A number given to -procs is both. With auto, the most is one
// per goroutine that can be busy at once, -cpu parsers or -readers
// readers, at most the machine's CPUs (more would only take turns); a
// capture file, read as fast as the machine can, starts on them all; a
// live capture starts on one, and the governor adds more under load.
func (c *Config) processors(cpus int) (start, most int) {
	if c.Procs > 0 {
		return c.Procs, c.Procs
	}
	most = max(1, min(max(c.Parsers, c.Readers), cpus))
	if c.ReadFile != "" {
		return most, most
	}
	return 1, most
}

// The governor's rule. Every sampleEvery it takes the CPU time the
// process used since the last sample, in CPUs' worth (busy 0.6: the time
// of 0.6 CPUs). It adds processors, at once, when busy is above upAt of
// the processors it has (one processor half busy leaves the reader
// little room for a burst), and all of them when the pipeline falls
// behind (a ring half full, the kernel dropped frames, or a parser's
// queue half full); it gives processors back when the load would have
// fitted in fewer at downAt each for downAfter samples in a row, so a
// load near a threshold does not make it change back and forth.
const (
	sampleEvery = pollTimeout // at the readers' ticks (nextTick)
	upAt        = 0.5
	downAt      = 0.3
	downAfter   = 50 // 5 s
)

// governor decides how many processors run the pipeline.
type governor struct {
	most, cur int
	low       int // samples in a row that would have done with fewer

	// raised: a reader found its ring half full and took every processor
	// at once (ringHalfFull); the next sample takes note.
	raised atomic.Bool
}

// ringHalfFull is called by a reader that finds a ring of its group half
// full (liveSource.behind): at a high packet rate the rest of the ring
// lasts a few milliseconds, less than a sample, so the reader takes every
// processor itself, once until the governor has seen it.
func (g *governor) ringHalfFull() {
	if g.raised.CompareAndSwap(false, true) {
		runtime.GOMAXPROCS(g.most)
	}
}

// step takes one sample and returns the processors to run on from now.
func (g *governor) step(busy float64, behind bool) int {
	want := min(g.most, max(1, int(math.Ceil(busy/upAt))))
	switch {
	case behind:
		g.cur, g.low = g.most, 0
	case want > g.cur:
		g.cur, g.low = want, 0
	case g.cur > 1 && busy < downAt*float64(g.cur-1):
		if g.low++; g.low >= downAfter {
			g.cur, g.low = max(1, int(math.Ceil(busy/downAt))), 0
		}
	default:
		g.low = 0
	}
	return g.cur
}

// run runs the governor until ctx is done. It reads the process's CPU
// time, the kernel's drops as the readers last published them, and the
// lengths of the parser queues; it sets GOMAXPROCS and says so in a log
// line when the number changes.
func (g *governor) run(ctx context.Context, reg *registry, queues []chan *pktBatch, logger *log.Logger) {
	tick := time.NewTimer(time.Until(nextTick(time.Now())))
	defer tick.Stop()
	lastCPU, lastAt := processCPU(), time.Now()
	lastDrops := reg.read()[cKernelDrops]
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cpu, now := processCPU(), time.Now()
		tick.Reset(time.Until(nextTick(now)))
		busy := float64(cpu-lastCPU) / float64(now.Sub(lastAt))
		lastCPU, lastAt = cpu, now
		drops := reg.read()[cKernelDrops]
		halfFull := g.raised.Load()
		behind := halfFull || drops > lastDrops || queuesHalfFull(queues)
		lastDrops = drops
		before := g.cur
		n := g.step(busy, behind)
		if halfFull {
			g.raised.Store(false) // after step: a ring half full again from here on raises again
		}
		if n != before {
			// A reader raising them between the Load above and this
			// call is undone here, and redone at the next sample: it
			// left raised set.
			runtime.GOMAXPROCS(n)
			why := fmt.Sprintf("CPU %.2f", busy)
			switch {
			case halfFull:
				why += ", a ring half full"
			case behind:
				why += ", falling behind"
			}
			logger.Printf("processors: %d, were %d (%s)", n, before, why)
		}
	}
}

// startGovernor starts the governor when most is more processors than
// httplog runs on now, and gives the readers of srcs its early warning.
// It returns the start message's words on the processors and the
// function that stops the governor and waits for it.
func startGovernor(ctx context.Context, most int, srcs []packetSource, reg *registry, queues []chan *pktBatch, logger *log.Logger) (text string, stop func()) {
	now := runtime.GOMAXPROCS(0)
	text = fmt.Sprintf("%d CPU(s)", now)
	if most <= now {
		return text, func() {}
	}
	g := &governor{most: most, cur: now}
	for _, src := range srcs {
		if l, ok := src.(*liveSource); ok {
			l.halfFull = g.ringHalfFull
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.run(ctx, reg, queues, logger)
	}()
	return text + fmt.Sprintf(" (up to %d as the load needs)", most), func() { cancel(); <-done }
}

// queuesHalfFull tells whether a parser has half a queue of batches
// waiting.
func queuesHalfFull(queues []chan *pktBatch) bool {
	for _, q := range queues {
		if len(q) >= queueDepth/2 {
			return true
		}
	}
	return false
}

// processCPU returns the CPU time of the process so far, user and system
// (the kernel's total of its threads' run time).
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
