package main

// Capture files read through their mapping (pcapfile.go): memory stays
// within a window, a file that grows is read to its new end, one that
// shrinks ends the run with an error instead of a crash, and standard
// input redirected from a file is mapped from where it stands.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestFileMappedMemory reads a pcap of 256 MiB, one record a page, and
// touches every frame's last byte: the resident memory grows by about a
// window (mapWindow), not by the file, because a window's pages leave it
// when the reader moves on. Each frame is the one written in its place,
// across the windows' ends too.
func TestFileMappedMemory(t *testing.T) {
	const records = 65536
	path := filepath.Join(t.TempDir(), "big.pcap")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	w.Write(pcapFile(le, 0xa1b2c3d4, linkEthernet))
	rec := pcapRecord(le, 1, 0, 4080, make([]byte, 4080)) // 4096 bytes
	for i := range records {
		binary.LittleEndian.PutUint32(rec[pcapRecordLen:], uint32(i))
		w.Write(rec)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out.Close()

	src := openMapped(t, path)
	defer src.close()
	before := procStatusBytes(t, os.Getpid(), "VmRSS")
	peak := before
	var f frame
	var sum byte
	n := 0
	for ; ; n++ {
		err := src.next(&f)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint32(f.data); got != uint32(n) || len(f.data) != 4080 {
			t.Fatalf("frame %d: %d bytes, numbered %d", n, len(f.data), got)
		}
		sum += f.data[len(f.data)-1]
		if n%1024 == 0 {
			peak = max(peak, procStatusBytes(t, os.Getpid(), "VmRSS"))
		}
	}
	if n != records || sum != 0 {
		t.Errorf("%d frames, their last bytes add up to %d; want %d, 0", n, sum, records)
	}
	grew := peak - before
	t.Logf("reading %d MiB, the resident memory grew by %d MiB", records*4096>>20, grew>>20)
	if limit := uint64(mapWindow + 16<<20); grew > limit { // a window and room for the heap
		t.Errorf("the resident memory grew by %d MiB, more than %d MiB", grew>>20, limit>>20)
	}
}

// TestFileMappedWindows: blocks longer than a window, skipped or cut, and
// packets on either side of a window's end, read through the mapping as
// they are read into the buffer (readCapture compares).
func TestFileMappedWindows(t *testing.T) {
	o := le
	skipped := ngBlock(o, 0x0bad, make([]byte, mapWindow+5000))
	long := make([]byte, maxFileFrame+3000)
	long[maxFileFrame-1] = 'z'
	got, err := readCapture(t, cat(ngSHB(o), ngIDB(o, linkEthernet),
		ngEPB(o, 0, 1, 1, []byte("a")), skipped, ngEPB(o, 0, 2, 1, []byte("b")),
		ngEPB(o, 0, 3, uint32(len(long)), long), skipped, skipped, ngEPB(o, 0, 4, 1, []byte("c"))))
	if err != nil {
		t.Fatal(err)
	}
	checkFrames(t, "pcapng of windows", got, []gotFrame{
		{"a", 1000, 1, linkEthernet},
		{"b", 2000, 1, linkEthernet},
		{string(long[:maxFileFrame]), 3000, len(long), linkEthernet},
		{"c", 4000, 1, linkEthernet},
	})
}

// TestFileMappedGrows: a file still being written, read to the end of
// what was mapped, is read on to its new end, a record cut at the old end
// included, as read(2) would.
func TestFileMappedGrows(t *testing.T) {
	var recs [][]byte
	for i := range 20 {
		recs = append(recs, pcapRecord(le, uint32(i), 0, 60, fmt.Appendf(nil, "frame %d", i)))
	}
	data := pcapFile(le, 0xa1b2c3d4, linkEthernet, recs...)
	first := pcapHeaderLen + 10*len(recs[0]) + 7 // ten records and 7 bytes of the eleventh
	path := filepath.Join(t.TempDir(), "growing.pcap")
	if err := os.WriteFile(path, data[:first], 0o644); err != nil {
		t.Fatal(err)
	}
	src := openMapped(t, path)
	defer src.close()
	var f frame
	for i := range 10 {
		if err := src.next(&f); err != nil || string(f.data) != fmt.Sprintf("frame %d", i) {
			t.Fatalf("frame %d: %q %v", i, f.data, err)
		}
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(data[first:])
	out.Close()
	got, err := readFrames(src)
	if err != nil || len(got) != 10 || got[0].data != "frame 10" || got[9].data != "frame 19" {
		t.Errorf("after the file grew: %v %v, want frames 10 to 19", got, err)
	}
}

// TestFileMappedShrinks: a file cut shorter while it is mapped ends the
// reader with an error naming the file and the byte, instead of the
// SIGBUS of touching the mapping past the end crashing the program; the
// frames before the cut are handed on, and counted, the faulting one not.
// Cut past what was read, it is seen when the reader reaches the end.
func TestFileMappedShrinks(t *testing.T) {
	pkt := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq)
	var recs [][]byte
	for range 200 {
		recs = append(recs, pcapRecord(le, 1567315011, 0, uint32(len(pkt)), pkt))
	}
	data := pcapFile(le, 0xa1b2c3d4, linkEthernet, recs...)
	const cut = 16384 // four pages
	whole := (cut - pcapHeaderLen) / len(recs[0])
	path := filepath.Join(t.TempDir(), "shrinking.pcap")
	open := func() *fileSource {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return openMapped(t, path)
	}

	src := open()
	if err := os.Truncate(path, cut); err != nil {
		t.Fatal(err)
	}
	q := make(chan *pktBatch, 200)
	free := make(chan *pktBatch, 200)
	for range cap(free) {
		free <- &pktBatch{}
	}
	reg := &registry{}
	err := <-startReaders(context.Background(), []packetSource{src}, readerConfig{limit: -1}, []chan *pktBatch{q}, free, reg)
	m := regexp.MustCompile(`^-r (.*): the file shrank while being read \(at byte (\d+)\)$`).FindStringSubmatch(fmt.Sprint(err))
	if m == nil {
		t.Fatalf("error %v, want the file shrank", err)
	}
	if at, _ := strconv.Atoi(m[2]); m[1] != path || at < cut || at >= cut+4096 {
		t.Errorf("error %v: the wrong file or byte (the cut is at %d)", err, cut)
	}
	items := 0
	for b := range q {
		items += len(b.items)
	}
	if n := reg.read(); items != whole || n[cPackets] != uint64(whole) || n[cNotHTTP]+n[cMalformed] != 0 {
		t.Errorf("%d requests handed on, %d packets counted, want %d of each: %v", items, n[cPackets], whole, n)
	}

	src = open()
	defer src.close()
	got, err := readFrames(src) // to the end of the window: the next call looks at the size
	if len(got) != len(recs) || err != nil {
		t.Fatalf("%d frames, %v", len(got), err)
	}
	os.Truncate(path, cut)
	if err := src.next(new(frame)); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("-r %s: the file shrank while being read (at byte %d)", path, len(data))) {
		t.Errorf("next after the file was cut: %v", err)
	}
}

// TestFileMappedStdin: standard input redirected from a file is mapped
// from its offset: what was read of it before httplog started is not
// read again.
func TestFileMappedStdin(t *testing.T) {
	junk := []byte(strings.Repeat("not a capture ", 400)) // past the first page
	data := cat(junk, pcapFile(le, 0xa1b2c3d4, linkEthernet, pcapRecord(le, 1, 0, 5, []byte("first")), pcapRecord(le, 2, 0, 6, []byte("second"))))
	path := filepath.Join(t.TempDir(), "stdin.pcap")
	os.WriteFile(path, data, 0o644)
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if _, err := in.Seek(int64(len(junk)), io.SeekStart); err != nil {
		t.Fatal(err)
	}
	old := os.Stdin
	os.Stdin = in
	defer func() { os.Stdin = old }()
	src := openMapped(t, "-")
	defer src.close()
	got, err := readFrames(src)
	if err != nil || fmt.Sprint(got) != fmt.Sprint([]gotFrame{{"first", 1e9, 5, linkEthernet}, {"second", 2e9, 6, linkEthernet}}) {
		t.Errorf("%v %v", got, err)
	}
}

// TestFileMappedReadOn: when a window cannot be mapped, reading goes on
// with read(2) from the next byte to read, the record it is in included.
func TestFileMappedReadOn(t *testing.T) {
	var recs [][]byte
	for i := range 10 {
		recs = append(recs, pcapRecord(le, uint32(i), 0, 60, fmt.Appendf(nil, "frame %d", i)))
	}
	path := filepath.Join(t.TempDir(), "capture")
	os.WriteFile(path, pcapFile(le, 0xa1b2c3d4, linkEthernet, recs...), 0o644)
	src := openMapped(t, path)
	defer src.close()
	var f frame
	for i := range 3 {
		if err := src.next(&f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
	}
	if err := src.readOn(1); err != nil || src.mapped {
		t.Fatalf("readOn: %v, mapped %v", err, src.mapped)
	}
	got, err := readFrames(src)
	if err != nil || len(got) != 7 || got[0].data != "frame 3" || got[6].data != "frame 9" {
		t.Errorf("read on: %v %v, want frames 3 to 9", got, err)
	}
}

// openMapped opens a capture file that must be mapped.
func openMapped(t *testing.T, path string) *fileSource {
	t.Helper()
	src, err := openFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !src.mapped {
		src.close()
		t.Fatalf("%s is not mapped", path)
	}
	return src
}

// TestFileMappedShrinksAtOnce: a file that shrinks between being mapped
// and its header being read (when it is opened, before any reader runs)
// is an error naming the cut, not a crash.
func TestFileMappedShrinksAtOnce(t *testing.T) {
	pkt := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq)
	path := filepath.Join(t.TempDir(), "gone.pcap")
	if err := os.WriteFile(path, pcapFile(le, 0xa1b2c3d4, linkEthernet, pcapRecord(le, 1567315011, 0, uint32(len(pkt)), pkt)), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s := newFileSource(path, f) // mapped, its header not read yet
	defer s.close()
	if !s.mapped {
		t.Fatal("not mapped")
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.firstHeader(); err == nil || err.Error() != "the file shrank while being read (at byte 0)" {
		t.Fatalf("error %v, want the file shrank at byte 0", err)
	}
}
