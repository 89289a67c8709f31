package main

import (
	"fmt"
	"testing"
	"time"
)

// TestParseProcs: -procs is auto or a number of processors, 1 to 256.
func TestParseProcs(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"auto", 0, true}, {" auto ", 0, true}, {"1", 1, true}, {"256", 256, true},
		{"0", 0, false}, {"257", 0, false}, {"-1", 0, false}, {"Auto", 0, false}, {"", 0, false}, {"2x", 0, false},
	} {
		got, err := parseProcs(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseProcs(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestProcessors: where httplog starts and how far the governor may go:
// a number given is both; with auto a live capture starts on one and may
// go to the larger of -cpu and -readers, never beyond the CPUs; a file is
// read on them all from the start.
func TestProcessors(t *testing.T) {
	for _, tt := range []struct {
		c           Config
		cpus        int
		start, most int
	}{
		{Config{Parsers: 1, Readers: 1}, 8, 1, 1},
		{Config{Parsers: 2, Readers: 1}, 8, 1, 2},
		{Config{Parsers: 1, Readers: 4}, 8, 1, 4},
		{Config{Parsers: 16, Readers: 4}, 8, 1, 8},
		{Config{Parsers: 4, Readers: 1, ReadFile: "x.pcap"}, 8, 4, 4},
		{Config{Parsers: 4, Readers: 1, ReadFile: "x.pcap"}, 2, 2, 2},
		{Config{Parsers: 4, Readers: 2, Procs: 3}, 2, 3, 3},
		{Config{Parsers: 1, Readers: 1, Procs: 2, ReadFile: "x.pcap"}, 8, 2, 2},
	} {
		if start, most := tt.c.processors(tt.cpus); start != tt.start || most != tt.most {
			t.Errorf("-cpu %d -readers %d -procs %d -r %q on %d CPUs: start %d, most %d; want %d, %d",
				tt.c.Parsers, tt.c.Readers, tt.c.Procs, tt.c.ReadFile, tt.cpus, start, most, tt.start, tt.most)
		}
	}
}

// TestGovernorStep: the governor adds processors at once when the load
// passes upAt of those it has, all of them when the pipeline falls behind,
// and gives them back only after downAfter samples in a row of a load
// that fits in fewer at downAt each; a load between the two thresholds
// keeps what it has.
func TestGovernorStep(t *testing.T) {
	type sample struct {
		busy   float64
		behind bool
	}
	cat := func(parts ...[]sample) (out []sample) {
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tt := range []struct {
		name    string
		most    int
		samples []sample
		want    []int // processors after each sample, or only the last if shorter
	}{
		{"idle stays on one", 4, repeated(100, sample{0.05, false}), []int{1}},
		{"half a CPU stays on one", 4, repeated(100, sample{0.5, false}), []int{1}},
		{"more than half a CPU adds one at once", 4, []sample{{0.2, false}, {0.6, false}}, []int{1, 2}},
		{"a heavy load adds what it needs at once", 8, []sample{{1.9, false}}, []int{4}},
		{"never more than most", 2, []sample{{3.5, false}}, []int{2}},
		{"falling behind takes them all", 4, []sample{{0.1, false}, {0.1, true}}, []int{1, 4}},
		{"back to one only after downAfter quiet samples", 4, cat([]sample{{0.1, true}}, repeated(downAfter, sample{0.1, false})),
			append(append([]int{4}, repeated(downAfter-1, 4)...), 1)},
		{"a busy sample starts the count again", 4, cat([]sample{{0.1, true}}, repeated(downAfter-1, sample{0.1, false}), []sample{{1.0, false}}, repeated(downAfter-1, sample{0.1, false})),
			[]int{4}},
		{"down to what the load needs at downAt each", 8, cat([]sample{{0.1, true}}, repeated(downAfter, sample{0.8, false})), []int{3}},
		{"between the thresholds it keeps two", 4, cat([]sample{{0.9, false}}, repeated(200, sample{0.4, false})), []int{2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &governor{most: tt.most, cur: 1}
			var got []int
			for _, s := range tt.samples {
				got = append(got, g.step(s.busy, s.behind))
			}
			want := tt.want
			if len(want) < len(got) {
				got = got[len(got)-len(want):]
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("processors %v, want %v", got, want)
			}
		})
	}
}

// repeated is n times v.
func repeated[T any](n int, v T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestLiveProcessorsFollowLoad: a live capture with -readers 2 -cpu 2
// starts on one processor and stays there on a quiet link; when its rings
// fill up and overflow (httplog stopped while frames come) it takes both,
// says so, and gives one back once the load has passed; every frame
// is still accounted for.
func TestLiveProcessorsFollowLoad(t *testing.T) {
	tp := newTopology(t)
	dir := newLogDir(t)
	d := tp.startHttplog(t, tp.srvNS, tp.srvIf, dir, "-readers", "2", "-cpu", "2", "-b", "2", "-local", fanoutServer4)
	if want := "2 parser(s) on 1 CPU(s) (up to 2 as the load needs)"; !d.stderr.contains(want) {
		t.Fatalf("want %q in the start message:\n%s", want, d.stderr.String())
	}
	// Quiet: no change.
	time.Sleep(time.Second)
	if d.stderr.contains("processors:") {
		t.Fatalf("the processors changed on a quiet link:\n%s", d.stderr.String())
	}
	overflowRings(t, tp, d, "procs.test")
	// The readers read the kernel's counters once a second.
	if !waitFor(5*time.Second, func() bool { return d.stderr.contains("processors: 2, were 1 (") }) {
		t.Fatalf("no second processor after the rings overflowed:\n%s", d.stderr.String())
	}
	if !d.stderr.contains("a ring half full)") && !d.stderr.contains("falling behind)") {
		t.Errorf("the change does not say the pipeline fell behind:\n%s", d.stderr.String())
	}
	if !waitFor(downAfter*sampleEvery+5*time.Second, func() bool { return d.stderr.contains("processors: 1, were 2 (") }) {
		t.Fatalf("the second processor was not given back once the load passed:\n%s", d.stderr.String())
	}
	stderr := stopHttplog(t, d)
	checkStatsAddUp(t, stderr)
	stats := parseStats(t, stderr)
	if stats["kernel_drops"] == 0 || stats["CQ"] == 0 {
		t.Errorf("want frames both dropped and logged: %s", lastStatsLine(stderr))
	}
}
