package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// Captures are built here byte by byte, as the format drafts
// (draft-ietf-opsawg-pcap, draft-ietf-opsawg-pcapng) lay them out, so that
// the reader is checked against an independent encoding, in both byte
// orders, with values no capture tool writes.

// byteOrder reads and appends in one byte order.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

var (
	le = byteOrder(binary.LittleEndian)
	be = byteOrder(binary.BigEndian)
)

// pcapFile is a pcap file header (magic 0xa1b2c3d4 for microseconds,
// 0xa1b23c4d for nanoseconds, written in order) and its records.
func pcapFile(order byteOrder, magic, link uint32, records ...[]byte) []byte {
	b := order.AppendUint32(nil, magic)
	b = order.AppendUint16(b, 2) // version 2.4
	b = order.AppendUint16(b, 4)
	b = order.AppendUint32(b, 0) // time zone
	b = order.AppendUint32(b, 0) // accuracy
	b = order.AppendUint32(b, 65535)
	b = order.AppendUint32(b, link)
	return append(b, bytes.Join(records, nil)...)
}

// pcapRecord is a record whose captured length is len(data).
func pcapRecord(order byteOrder, sec, frac, wire uint32, data []byte) []byte {
	b := order.AppendUint32(nil, sec)
	b = order.AppendUint32(b, frac)
	b = order.AppendUint32(b, uint32(len(data)))
	b = order.AppendUint32(b, wire)
	return append(b, data...)
}

// ngBlock is a pcapng block: type, length, body padded to 4 bytes, length.
func ngBlock(order byteOrder, typ uint32, body []byte) []byte {
	padded := append(body[:len(body):len(body)], make([]byte, -len(body)&3)...)
	b := order.AppendUint32(nil, typ)
	b = order.AppendUint32(b, uint32(12+len(padded)))
	b = append(b, padded...)
	return order.AppendUint32(b, uint32(12+len(padded)))
}

func ngSHB(order byteOrder) []byte {
	b := order.AppendUint32(nil, ngByteOrder)
	b = order.AppendUint16(b, 1) // version 1.0
	b = order.AppendUint16(b, 0)
	b = order.AppendUint64(b, math.MaxUint64) // section length: not given
	return ngBlock(order, ngSectionHeader, b)
}

// ngIDB is an interface description with options (ngOpt), ended by
// opt_endofopt when there are any.
func ngIDB(order byteOrder, link uint16, opts ...[]byte) []byte {
	b := order.AppendUint16(nil, link)
	b = order.AppendUint16(b, 0)
	b = order.AppendUint32(b, 0) // snap length: none
	if len(opts) > 0 {
		b = append(b, bytes.Join(opts, nil)...)
		b = append(b, 0, 0, 0, 0)
	}
	return ngBlock(order, ngInterfaceDesc, b)
}

func ngOpt(order byteOrder, code uint16, value []byte) []byte {
	b := order.AppendUint16(nil, code)
	b = order.AppendUint16(b, uint16(len(value)))
	b = append(b, value...)
	return append(b, make([]byte, -len(value)&3)...)
}

func tsresol(order byteOrder, r byte) []byte { return ngOpt(order, 9, []byte{r}) }
func tsoffset(order byteOrder, sec int64) []byte {
	return ngOpt(order, 14, order.AppendUint64(nil, uint64(sec)))
}

func ngEPB(order byteOrder, iface uint32, ts uint64, wire uint32, data []byte) []byte {
	b := order.AppendUint32(nil, iface)
	b = order.AppendUint32(b, uint32(ts>>32))
	b = order.AppendUint32(b, uint32(ts))
	b = order.AppendUint32(b, uint32(len(data)))
	b = order.AppendUint32(b, wire)
	return ngBlock(order, ngEnhancedPkt, append(b, data...))
}

func ngOPB(order byteOrder, iface uint16, ts uint64, wire uint32, data []byte) []byte {
	b := order.AppendUint16(nil, iface)
	b = order.AppendUint16(b, 0) // drops
	b = order.AppendUint32(b, uint32(ts>>32))
	b = order.AppendUint32(b, uint32(ts))
	b = order.AppendUint32(b, uint32(len(data)))
	b = order.AppendUint32(b, wire)
	return ngBlock(order, ngObsoletePkt, append(b, data...))
}

func ngSPB(order byteOrder, wire uint32, data []byte) []byte {
	return ngBlock(order, ngSimplePkt, append(order.AppendUint32(nil, wire), data...))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// gotFrame is a frame as read, with its bytes copied.
type gotFrame struct {
	data string
	ts   int64
	wire int
	link int
}

func (g gotFrame) String() string {
	return fmt.Sprintf("{%q ts %d wire %d link %d}", g.data, g.ts, g.wire, g.link)
}

// readCapture writes data to a file, reads it with openFile (through the
// mapping, unless data is empty) and returns its frames and the error
// that ended them: nil at a clean end. It checks that the same bytes read
// into the buffer, as from a pipe, give the same frames and end.
func readCapture(t *testing.T, data []byte) ([]gotFrame, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "capture")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var got []gotFrame
	src, err := openFile(path)
	if err == nil {
		if !src.mapped && len(data) > 0 {
			t.Errorf("a file of %d bytes is not mapped", len(data))
		}
		got, err = readFrames(src)
		src.close()
	}
	read, readErr := readFrames(newFileSource(path, bytes.NewReader(data)))
	// openFile's errors (the header's) do not name the file; next's do.
	text := func(err error) string {
		if err == nil {
			return "<nil>"
		}
		return strings.TrimPrefix(err.Error(), "-r "+path+": ")
	}
	if fmt.Sprint(got, text(err)) != fmt.Sprint(read, text(readErr)) {
		t.Errorf("%d bytes mapped: %v %v\nread: %v %v", len(data), got, err, read, readErr)
	}
	return got, err
}

func readFrames(src packetSource) ([]gotFrame, error) {
	var got []gotFrame
	var f frame
	for {
		err := src.next(&f)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, gotFrame{string(f.data), f.ts, f.wire, f.link})
	}
}

func checkFrames(t *testing.T, name string, got, want []gotFrame) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", name, got, want)
	}
}

// TestPcapRecords: both byte orders, both magics, the link type at its
// full width (SLL2 is 276) with the FCS bits above it ignored, and a
// record longer on the capture than on the wire read like any other.
func TestPcapRecords(t *testing.T) {
	for _, order := range []byteOrder{le, be} {
		for _, m := range []struct {
			magic uint32
			scale int64
		}{{0xa1b2c3d4, 1000}, {0xa1b23c4d, 1}} {
			for _, link := range []uint32{linkEthernet, linkLinuxSLL2, 0x1ff, 0x14000000 | linkEthernet} {
				data := pcapFile(order, m.magic, link,
					pcapRecord(order, 1567315011, 2000, 60, []byte("first")),
					pcapRecord(order, 1567315012, 999999, 4, []byte("caplen > len")),
					pcapRecord(order, math.MaxUint32, 0, 0, nil))
				got, err := readCapture(t, data)
				l := int(link & 0xffff)
				want := []gotFrame{
					{"first", 1567315011e9 + 2000*m.scale, 60, l},
					{"caplen > len", 1567315012e9 + 999999*m.scale, 12, l},
					{"", math.MaxUint32 * 1e9, 0, l},
				}
				name := fmt.Sprintf("%v magic %#x link %#x", order, m.magic, link)
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
				checkFrames(t, name, got, want)
			}
		}
	}
}

// TestPcapngBlocks: two sections of either byte order, interfaces of every
// kind of time resolution and offset, link types above 255, packets of the
// three kinds, blocks httplog does not read, and packets naming an
// interface the section does not describe (link -1, counted as
// unsupported_link by the reader; reading goes on).
func TestPcapngBlocks(t *testing.T) {
	o := le
	first := cat(
		ngSHB(o),
		ngIDB(o, linkEthernet), // microseconds, the default
		ngIDB(o, linkLinuxSLL2, tsresol(o, 9), tsoffset(o, 100)),
		ngBlock(o, 0x0bad, []byte("unknown")),
		ngIDB(o, 0x1ff, tsresol(o, 0x86)), // 2^-6 s
		ngEPB(o, 0, 1567315011_000002, 60, []byte("eth")),
		ngEPB(o, 1, 5_000000001, 80, []byte("sll2")),
		ngEPB(o, 2, 64*10+32, 9, []byte("511")),
		ngBlock(o, 4, []byte("name resolution")),
		ngSPB(o, 6, []byte("simple")),
		ngSPB(o, 9, []byte("cut")), // wire 9: the block holds 3 bytes and padding
		ngOPB(o, 1, 7, 0, []byte("obsolete")),
		ngEPB(o, 7, 1_500000, 3, []byte("no interface 7")),
	)
	o = be
	second := cat(
		ngSHB(o),
		ngIDB(o, linkRaw, tsresol(o, 3)),
		ngEPB(o, 0, 1500, 5, []byte("raw")),
		ngEPB(o, 1, 1500, 5, []byte("iface 1 was the first section's")),
	)
	got, err := readCapture(t, cat(first, second))
	if err != nil {
		t.Fatal(err)
	}
	checkFrames(t, "pcapng", got, []gotFrame{
		{"eth", 1567315011_000002000, 60, linkEthernet},
		{"sll2", 105_000000001, 80, linkLinuxSLL2},
		{"511", 10_500000000, 9, 0x1ff},
		{"simple", 0, 6, linkEthernet},
		{"cut\x00", 0, 9, linkEthernet},
		{"obsolete", 100_000000007, 8, linkLinuxSLL2},
		{"no interface 7", 1_500000000, 14, -1},
		{"raw", 1_500000000, 5, linkRaw},
		{"iface 1 was the first section's", 1_500000, 31, -1},
	})
}

// TestPcapngResolutions: resolutions finer than a nanosecond, coarser than
// a second, offsets, and times past what int64 nanoseconds hold, which
// are clamped to the last instant (2262-04-11) instead of wrapping.
func TestPcapngResolutions(t *testing.T) {
	const last = math.MaxInt64
	for _, tt := range []struct {
		resol  byte
		offset int64
		ts     uint64
		want   int64
	}{
		{0x7f, 0, math.MaxUint64, 0},                     // 10^-127 s
		{0x7f, 1567315011, math.MaxUint64, 1567315011e9}, // and an offset
		{0xc0, 0, 1 << 63, 500_000_000},                  // 2^-64 s
		{0xff, 0, math.MaxUint64, 0},                     // 2^-127 s
		{0x80, 0, 1567315011, 1567315011e9},              // 2^0 s
		{0x80 | 30, 0, 3 << 29, 1_500_000_000},           // 2^-30 s
		{0, 0, 9223372036, 9223372036e9},                 // seconds
		{0, 0, 9223372037, last},                         // 2262-04-11 23:47:17
		{0, 0, math.MaxUint64, last},
		{9, 0, math.MaxInt64, last},
		{9, 0, math.MaxInt64 + 1, last}, // 2262 + 1 ns, not 1677
		{6, 0, 9300000000_000000, last}, // 2264, not 1738
		{6, 1, 9223372035_854775, last - 807},
		{6, 2, 9223372035_854775, last},
		{0, -100, 50, -50e9},
		{0, math.MinInt64, 1<<63 + 5, 5e9},
		{0, math.MinInt64, 0, math.MinInt64},
		{0, math.MaxInt64, 1, last},
		{19, 0, math.MaxUint64, 1_844674407},
		{20, 0, math.MaxUint64, 184467440},
		{29, 0, math.MaxUint64, 0},
	} {
		o := le
		data := cat(ngSHB(o), ngIDB(o, linkEthernet, tsresol(o, tt.resol), tsoffset(o, tt.offset)), ngEPB(o, 0, tt.ts, 1, []byte("x")))
		got, err := readCapture(t, data)
		if err != nil || len(got) != 1 || got[0].ts != tt.want {
			t.Errorf("if_tsresol %#x, if_tsoffset %d, ts %d: %v %v, want ts %d", tt.resol, tt.offset, tt.ts, got, err, tt.want)
		}
	}
}

// TestNgTime compares the conversion with exact arithmetic, on edges and
// on random values of every resolution.
func TestNgTime(t *testing.T) {
	exact := func(ts uint64, resol byte, offset int64) int64 {
		unit := new(big.Int).Lsh(big.NewInt(1), uint(resol&0x7f))
		if resol&0x80 == 0 {
			unit.Exp(big.NewInt(10), big.NewInt(int64(resol&0x7f)), nil)
		}
		v := new(big.Int).Mul(new(big.Int).SetUint64(ts), big.NewInt(1e9))
		v.Div(v, unit) // rounds down: v is not negative
		v.Add(v, new(big.Int).Mul(big.NewInt(offset), big.NewInt(1e9)))
		switch {
		case v.Cmp(big.NewInt(math.MaxInt64)) > 0:
			return math.MaxInt64
		case v.Cmp(big.NewInt(math.MinInt64)) < 0:
			return math.MinInt64
		}
		return v.Int64()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	tss := []uint64{0, 1, 999_999_999, 1e9, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64}
	offsets := []int64{0, 1, -1, 9223372036, -9223372037, math.MaxInt64, math.MinInt64}
	for i := 0; i < 20000; i++ {
		ts, offset := rng.Uint64()>>rng.UintN(64), rng.Int64()>>rng.UintN(64)
		if rng.IntN(2) == 0 {
			offset = -offset
		}
		if i < len(tss)*len(offsets) {
			ts, offset = tss[i%len(tss)], offsets[i/len(tss)]
		}
		resol := byte(rng.UintN(256))
		if got, want := ngTime(ts, resol, offset), exact(ts, resol, offset); got != want {
			t.Fatalf("ngTime(%d, %#x, %d) = %d, want %d", ts, resol, offset, got, want)
		}
	}
}

// captureBlocks is a capture with its blocks' end offsets, and for each
// whether it holds a packet.
type captureBlocks struct {
	data   []byte
	header int // bytes openFile reads
	ends   []int
	packet []bool
}

func (c *captureBlocks) add(b []byte, packet bool) {
	c.data = append(c.data, b...)
	c.ends = append(c.ends, len(c.data))
	c.packet = append(c.packet, packet)
}

// TestCaptureTruncated cuts a pcap and a pcapng capture at every length:
// the frames before the cut are read, then an error, unless the cut falls
// between records (a clean end, like a file written to that point).
func TestCaptureTruncated(t *testing.T) {
	pcap := &captureBlocks{header: pcapHeaderLen}
	pcap.add(pcapFile(le, 0xa1b2c3d4, linkEthernet), false)
	ng := &captureBlocks{header: ngMinBlock}
	ng.add(ngSHB(be), false)
	ng.add(ngIDB(be, linkEthernet, tsresol(be, 9)), false)
	for i, payload := range []string{"one", "two packet", "three"} {
		pcap.add(pcapRecord(le, uint32(i), 0, 60, []byte(payload)), true)
		ng.add(ngEPB(be, 0, uint64(i), 60, []byte(payload)), true)
		ng.add(ngBlock(be, 0x0bad, []byte(payload)), false)
	}
	for _, c := range []*captureBlocks{pcap, ng} {
		for cut := 0; cut < len(c.data); cut++ {
			got, err := readCapture(t, c.data[:cut])
			whole, clean := 0, false
			for i, end := range c.ends {
				if end <= cut && c.packet[i] {
					whole++
				}
				clean = clean || end == cut
			}
			switch {
			case cut < c.header:
				if err == nil || !strings.Contains(err.Error(), "not a pcap or pcapng file: too short") {
					t.Errorf("cut at %d of %d: %v, want too short", cut, len(c.data), err)
				}
			case clean:
				if err != nil || len(got) != whole {
					t.Errorf("cut at %d of %d, between blocks: %d frames, %v; want %d and a clean end", cut, len(c.data), len(got), err, whole)
				}
			default:
				if err == nil || len(got) != whole || !strings.Contains(err.Error(), "unexpected EOF") {
					t.Errorf("cut at %d of %d: %d frames, %v; want %d and unexpected EOF", cut, len(c.data), len(got), err, whole)
				}
			}
		}
	}
}

// hostileCaptures are inputs with lengths that lie, each with the error
// it must end in.
func hostileCaptures() []struct {
	name string
	data []byte
	want string
} {
	eth := ngIDB(le, linkEthernet)
	// A pcapng block: type, then a length that lies.
	block := func(typ, length uint32, body ...byte) []byte {
		b := le.AppendUint32(le.AppendUint32(nil, typ), length)
		return append(b, body...)
	}
	epb := ngEPB(le, 0, 0, 100, make([]byte, 8))
	le.PutUint32(epb[20:], 100) // captured length beyond the block
	badBOM := ngSHB(le)
	le.PutUint32(badBOM[8:], 0x1a2b3c4e)
	version := ngSHB(le)
	le.PutUint16(version[12:], 2)
	bigSnap := pcapFile(le, 0xa1b2c3d4, linkEthernet, le.AppendUint32(le.AppendUint32(make([]byte, 8), 0x7ffffff0), 0))
	le.PutUint32(bigSnap[16:], math.MaxUint32)
	oldPcap := pcapFile(le, 0xa1b2c3d4, linkEthernet)
	le.PutUint16(oldPcap[4:], 1)
	return []struct {
		name string
		data []byte
		want string
	}{
		{"block shorter than its header", cat(ngSHB(le), block(6, 8, 0, 0, 0, 0)), "has a length of 8 bytes"},
		{"block length not a multiple of 4", cat(ngSHB(le), block(6, 33, make([]byte, 40)...)), "has a length of 33 bytes"},
		{"huge skipped block", cat(ngSHB(le), block(0x0bad, 0xfffffffc, make([]byte, 40)...)), "unexpected EOF"},
		{"huge interface description", cat(ngSHB(le), block(1, 0x7ffffffc, make([]byte, 40)...)), "interface description at byte 28 has a length of 2147483644 bytes"},
		{"huge packet block", cat(ngSHB(le), eth, block(6, 0xfffffff0, make([]byte, 40)...)), "unexpected EOF"},
		{"packet longer than its block", cat(ngSHB(le), eth, epb), "holds 8 bytes and claims 100"},
		{"packet block shorter than its fields", cat(ngSHB(le), eth, block(6, 20, make([]byte, 12)...)), "has a length of 20 bytes"},
		{"section header of 12 bytes", block(ngSectionHeader, 12, 0x4d, 0x3c, 0x2b, 0x1a), "has a length of 12 bytes"},
		{"section header without byte order", badBOM, "no byte-order magic"},
		{"pcapng version 2", version, "pcapng version 2.0 is not supported"},
		{"pcap caplen 2^32-1", pcapFile(le, 0xa1b2c3d4, linkEthernet, le.AppendUint32(le.AppendUint32(make([]byte, 8), math.MaxUint32), 0)), "claims 4294967295 captured bytes (at most 262144)"},
		{"pcap caplen 2^31 under a snap length of 2^32-1", bigSnap, "claims 2147483632 captured bytes"},
		{"pcap version 1", oldPcap, "pcap version 1.4 is not supported"},
		{"not a capture", []byte("GET / HTTP/1.1\r\n\r\n"), "not a pcap or pcapng file: it begins with 0x47455420"},
	}
}

// TestCaptureHostile: lengths that lie end the read with a clean error,
// without a panic and without allocating what they claim.
func TestCaptureHostile(t *testing.T) {
	for _, tt := range hostileCaptures() {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		got, err := readCapture(t, tt.data)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v after %v, want an error with %q", tt.name, err, got, tt.want)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
			t.Errorf("%s: %d bytes allocated", tt.name, n)
		}
	}
	// A packet longer than maxFileFrame in a block that holds it is cut to
	// maxFileFrame; the next block is read as usual.
	big := bytes.Repeat([]byte("x"), maxFileFrame+1000)
	got, err := readCapture(t, cat(ngSHB(le), ngIDB(le, linkEthernet), ngEPB(le, 0, 0, 0, big), ngEPB(le, 0, 0, 2, []byte("ok"))))
	if err != nil || len(got) != 2 || got[0].data != string(big[:maxFileFrame]) || got[0].wire != len(big) || got[1].data != "ok" {
		t.Errorf("a packet longer than %d: %d frames, %v", maxFileFrame, len(got), err)
	}
}

// sll2 puts a Linux cooked capture v2 header in front of an IP packet.
func sll2(etype uint16, l3 []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, etype)
	b = append(b, 0, 0)                         // reserved
	b = binary.BigEndian.AppendUint32(b, 3)     // interface index
	b = binary.BigEndian.AppendUint16(b, 1)     // ARPHRD_ETHER
	b = append(b, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0) // to us; 6-byte address, padded to 8
	return append(b, l3...)
}

// TestSLL2HTTP: what tcpdump -i any -w writes (LINUX_SLL2, link type 276)
// is decoded, in pcap and in pcapng. pcapgo's writer cannot write link
// type 276, so the headers are written here.
func TestSLL2HTTP(t *testing.T) {
	req := sll2(etherIPv4, ipv4Packet("192.0.2.1", "198.51.100.2", 6, 20, 0, tcpSegment(40000, 80, 20, getReq)))
	resp := sll2(etherIPv6, ipv6Packet("2001:db8::2", "2001:db8::1", 6, nil, nil, tcpSegment(80, 40000, 20, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")))
	const at = 1567315011
	files := map[string][]byte{
		"pcap": pcapFile(le, 0xa1b2c3d4, linkLinuxSLL2,
			pcapRecord(le, at, 2000, uint32(len(req)), req),
			pcapRecord(le, at, 3000, uint32(len(resp)), resp)),
		"pcapng": cat(ngSHB(be), ngIDB(be, linkLinuxSLL2),
			ngEPB(be, 0, at*1e6+2000, uint32(len(req)), req),
			ngEPB(be, 0, at*1e6+3000, uint32(len(resp)), resp)),
	}
	want := "2019-09-01 05:16:51.002 192.0.2.1#40000 198.51.100.2#80 CQ GET /index.html HTTP/1.1 www.example.com curl/8.0\n" +
		"2019-09-01 05:16:51.003 2001:db8::2#80 2001:db8::1#40000 CR HTTP/1.1 200 OK 5 text/plain\n"
	for name, data := range files {
		path := filepath.Join(t.TempDir(), "sll2."+name)
		os.WriteFile(path, data, 0o644)
		out, stderr, code := runPipeline(t, "-r", path, "-d", "-")
		if code != 0 || out != want || !strings.Contains(stderr, "unsupported_link=0 ") {
			t.Errorf("%s: exit %d\ngot:\n%s\nwant:\n%s%s", name, code, out, want, stderr)
		}
	}
}

// TestSLL2Corpus: the corpus's captures of link type 276 are decoded: no
// frame is counted as an unsupported link.
func TestSLL2Corpus(t *testing.T) {
	root := filepath.Join(corpusDir(t), "pcaps")
	found := map[string]bool{}
	for _, capture := range corpusCaptures(t) {
		src, err := openFile(capture)
		if err != nil {
			continue
		}
		frames, _ := readFrames(src)
		src.close()
		for _, f := range frames {
			if f.link == linkLinuxSLL2 {
				name, _ := filepath.Rel(root, capture)
				found[name] = true
				break
			}
		}
	}
	if !found["linux_dlt_sll2.pcap"] {
		t.Fatalf("no frame of link type 276 in linux_dlt_sll2.pcap (captures with some: %v)", found)
	}
	for name := range found {
		_, stderr, code := runPipeline(t, "-r", filepath.Join(root, name), "-p", "any", "-d", "-")
		n := parseStats(t, stderr)
		if code != 0 || n["packets"] == 0 || n["unsupported_link"] != 0 || n["malformed"] != 0 {
			t.Errorf("%s: exit %d, %s", name, code, lastStatsLine(stderr))
		}
	}
}

// TestCaptureFileSkipsAndCounts: through the pipeline, what can be
// skipped is skipped and counted, and a cut file of either format ends in
// exit 1 after its lines.
func TestCaptureFileSkipsAndCounts(t *testing.T) {
	req := func(port uint16) []byte { return ipv4HTTP("192.0.2.1", "198.51.100.2", port, 80, getReq) }
	line := func(time string, port int) string {
		return fmt.Sprintf("%s 192.0.2.1#%d 198.51.100.2#80 CQ GET /index.html HTTP/1.1 www.example.com curl/8.0\n", time, port)
	}
	const at = 1567315011
	cutNg := cat(ngSHB(le), ngIDB(le, linkEthernet), ngEPB(le, 0, at*1e6, 0, req(1)), ngEPB(le, 0, at*1e6, 0, req(2)))
	cutPcap := pcapFile(le, 0xa1b2c3d4, linkEthernet, pcapRecord(le, at, 0, 0, req(1)), pcapRecord(le, at, 0, 0, req(2)))
	for _, tt := range []struct {
		name  string
		data  []byte
		code  int
		lines string
		stats string
	}{
		{"pcap caplen > len", pcapFile(le, 0xa1b2c3d4, linkEthernet, pcapRecord(le, at, 0, 20, req(1)), pcapRecord(le, at, 1000, 0, req(2))),
			0, line("2019-09-01 05:16:51.000", 1) + line("2019-09-01 05:16:51.001", 2), "packets=2 "},
		{"pcapng missing interface", cat(ngSHB(le), ngIDB(le, linkEthernet), ngEPB(le, 1, at*1e6, 0, req(1)), ngEPB(le, 0, at*1e6, 0, req(2))),
			0, line("2019-09-01 05:16:51.000", 2), "unsupported_link=1 "},
		{"pcapng if_tsresol 0x7f", cat(ngSHB(le), ngIDB(le, linkEthernet, tsresol(le, 0x7f)), ngEPB(le, 0, math.MaxUint64, 0, req(1))),
			0, line("1970-01-01 00:00:00.000", 1), "CQ=1 "},
		{"pcapng if_tsresol 0xc0", cat(ngSHB(le), ngIDB(le, linkEthernet, tsresol(le, 0xc0)), ngEPB(le, 0, 3<<62, 0, req(1))),
			0, line("1970-01-01 00:00:00.750", 1), "CQ=1 "},
		{"pcapng after 2262", cat(ngSHB(le), ngIDB(le, linkEthernet, tsresol(le, 0)), ngEPB(le, 0, 9300000000, 0, req(1))),
			0, line("2262-04-11 23:47:16.854", 1), "CQ=1 "},
		{"pcapng cut", cutNg[:len(cutNg)-6], 1, line("2019-09-01 05:16:51.000", 1), "stopped: -r "},
		{"pcap cut", cutPcap[:len(cutPcap)-6], 1, line("2019-09-01 05:16:51.000", 1), "stopped: -r "},
	} {
		path := filepath.Join(t.TempDir(), "capture")
		os.WriteFile(path, tt.data, 0o644)
		out, stderr, code := runPipeline(t, "-r", path, "-d", "-")
		if code != tt.code || out != tt.lines || !strings.Contains(stderr, tt.stats) {
			t.Errorf("%s: exit %d, lines\n%s\nstderr\n%s\nwant exit %d, lines\n%s", tt.name, code, out, stderr, tt.code, tt.lines)
		}
		if tt.code != 0 && !strings.Contains(stderr, "unexpected EOF") {
			t.Errorf("%s: the error does not say the file is cut:\n%s", tt.name, stderr)
		}
	}
}

// TestFileFIFO reads a FIFO as tcpdump -w would fill it: opening it does
// not wait for a writer, a read waits at most pollTimeout for the rest of
// a header or record, and a record cut by the writer is read once whole.
// It is long because it is one FIFO taken through a sequence of writes.
func TestFileFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	opened := make(chan *fileSource, 1)
	go func() {
		src, err := openFile(path)
		if err != nil {
			t.Error(err)
		}
		opened <- src
	}()
	var src *fileSource
	select {
	case src = <-opened:
	case <-time.After(10 * time.Second):
		t.Fatal("opening a FIFO without a writer blocks")
	}
	if src == nil {
		return
	}
	defer src.close()
	if d := src.describe(); !strings.Contains(d, "has not come yet") {
		t.Errorf("describe() = %q before the header", d)
	}
	var f frame
	// next must come back with errTimeout, and soon, while the input stalls.
	stalled := func(what string) {
		t.Helper()
		start := time.Now()
		if err := src.next(&f); err != errTimeout {
			t.Fatalf("%s: %v, want errTimeout", what, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: next waited %v", what, d)
		}
	}
	stalled("no writer")
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rec1 := pcapRecord(le, 1, 0, 5, []byte("whole"))
	rec2 := pcapRecord(le, 2, 0, 4, []byte("half"))
	data := cat(pcapFile(le, 0xa1b2c3d4, linkEthernet), rec1, rec2)
	w.Write(data[:10])
	stalled("half a header")
	part := pcapHeaderLen + len(rec1) + 10
	w.Write(data[10:part])
	// The header and the first record have come, and part of the second.
	err = errTimeout
	for tries := 0; err == errTimeout && tries < 50; tries++ {
		err = src.next(&f)
	}
	if err != nil {
		t.Fatal(err)
	}
	if string(f.data) != "whole" || src.describe() != "pcap file "+path {
		t.Errorf("first frame %q from %q", f.data, src.describe())
	}
	stalled("half a record")
	w.Write(data[part:])
	w.Close()
	var got []string
	for tries := 0; tries < 50; tries++ {
		err := src.next(&f)
		if err == io.EOF {
			break
		}
		if err == nil {
			got = append(got, string(f.data))
		} else if err != errTimeout {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != "[half]" {
		t.Errorf("after the rest came: %q, want [half]", got)
	}
}

// TestPipeStalled: httplog -r - on a pipe that stalls (before the header,
// or inside a record) writes the lines of the whole packets within about a
// second, and stops on SIGTERM, exit 0.
func TestPipeStalled(t *testing.T) {
	t.Run("no header", func(t *testing.T) {
		d := startPipedRaw(t, "-d", t.TempDir())
		if !d.stderr.waitText("started", 5*time.Second) {
			t.Fatalf("no start message:\n%s", d.stderr.String())
		}
		d.stop(t)
	})
	t.Run("half a record", func(t *testing.T) {
		dir := t.TempDir()
		d := startPiped(t, "-d", dir)
		d.send(t, 1)
		rec := pcapRecord(le, 1567315011, 0, 100, make([]byte, 100))
		d.in.Write(rec[:30])
		name := filepath.Join(dir, todayFile())
		if waitLogLines(dir, 1, 5*time.Second) < 1 {
			t.Errorf("the whole packet's line was not written while the next record is incomplete\n%s", d.stderr.String())
		}
		d.stop(t)
		checkNumbered(t, 1, name)
	})
}

// TestFileSourceAllocs: reading a frame allocates nothing, from a pcap or
// pcapng file (mapped) or from a FIFO (read).
func TestFileSourceAllocs(t *testing.T) {
	pkt := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq)
	var pcap, ng [][]byte
	for i := range 1000 {
		pcap = append(pcap, pcapRecord(le, uint32(i), 0, uint32(len(pkt)), pkt))
		ng = append(ng, ngEPB(le, 0, uint64(i), uint32(len(pkt)), pkt))
	}
	files := map[string][]byte{
		"pcap":   pcapFile(le, 0xa1b2c3d4, linkEthernet, pcap...),
		"pcapng": cat(ngSHB(le), ngIDB(le, linkEthernet, tsresol(le, 0x89)), cat(ng...)),
	}
	dir := t.TempDir()
	for name, data := range files {
		for _, fifo := range []bool{false, true} {
			path := filepath.Join(dir, fmt.Sprint(name, fifo))
			if fifo {
				if err := unix.Mkfifo(path, 0o600); err != nil {
					t.Fatal(err)
				}
				go func() {
					if w, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
						w.Write(data)
						w.Close()
					}
				}()
			} else {
				os.WriteFile(path, data, 0o644)
			}
			src, err := openFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if src.mapped == fifo {
				t.Errorf("%s (FIFO %v): mapped %v", name, fifo, src.mapped)
			}
			var f frame
			read := func() {
				for {
					if err := src.next(&f); err != errTimeout {
						if err != nil {
							t.Fatal(err)
						}
						return
					}
				}
			}
			for range 10 {
				read()
			}
			if n := testing.AllocsPerRun(500, read); n != 0 {
				t.Errorf("%s (FIFO %v): %v allocations per frame", name, fifo, n)
			}
			src.close()
		}
	}
}

// stutterReader hands out its data a few bytes at a time, with a pipe's
// timeout between the pieces.
type stutterReader struct {
	data  []byte
	n     int
	pause bool
}

func (r *stutterReader) Read(b []byte) (int, error) {
	if r.pause = !r.pause; r.pause {
		return 0, errTimeout
	}
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	r.n = r.n%13 + 1
	k := copy(b[:min(len(b), r.n)], r.data)
	r.data = r.data[k:]
	return k, nil
}

// FuzzCaptureFile: whatever the bytes, the capture readers return frames
// and then io.EOF or a one-line error, never a panic; memory stays within
// the read buffer; reading the same bytes as a stalling pipe, or from a
// file through its mapping, gives the same frames; and a pcap file pcapgo
// can read gives pcapgo's frames.
// It is long because it holds its seeds, each with a comment, and the properties it checks.
func FuzzCaptureFile(f *testing.F) {
	o, b := le, be
	eth := ipv4HTTP("192.0.2.1", "198.51.100.2", 40000, 80, getReq)
	for _, seed := range [][]byte{
		// pcap: both orders, both magics, SLL2 and a link type above 255,
		// FCS bits, caplen > len, a record cut short.
		pcapFile(o, 0xa1b2c3d4, linkEthernet, pcapRecord(o, 1, 2, 60, eth)),
		pcapFile(b, 0xa1b23c4d, linkLinuxSLL2, pcapRecord(b, 1, 999999999, 60, sll2(etherIPv4, eth[14:]))),
		pcapFile(o, 0xa1b2c3d4, 0x1ff, pcapRecord(o, 1, 2, 3, eth)),
		pcapFile(o, 0xa1b2c3d4, 0x14000001, pcapRecord(o, 1, 2, 60, eth)),
		pcapFile(o, 0xa1b2c3d4, linkEthernet, pcapRecord(o, 1, 2, 60, eth))[:50],
		// pcapng: resolutions that once crashed (0x7f, 0xc0), ns, 2^-6,
		// an offset, two sections, simple and obsolete packet blocks, an
		// unknown block, a missing interface, times after 2262.
		cat(ngSHB(o), ngIDB(o, linkEthernet, tsresol(o, 0x7f)), ngEPB(o, 0, math.MaxUint64, 60, eth)),
		cat(ngSHB(o), ngIDB(o, linkEthernet, tsresol(o, 0xc0)), ngEPB(o, 0, 1<<63, 60, eth)),
		cat(ngSHB(o), ngIDB(o, linkLinuxSLL2, tsresol(o, 9), tsoffset(o, -100)), ngEPB(o, 0, 1, 60, sll2(etherIPv4, eth[14:]))),
		cat(ngSHB(b), ngIDB(b, 0x1ff, tsresol(b, 0x86)), ngBlock(b, 0x0bad, []byte("x")), ngSPB(b, 60, eth), ngOPB(b, 0, 1, 60, eth),
			ngSHB(o), ngEPB(o, 0, 1, 60, eth), ngIDB(o, linkEthernet), ngEPB(o, 3, 1, 60, eth)),
		cat(ngSHB(o), ngIDB(o, linkEthernet, tsresol(o, 0)), ngEPB(o, 0, 9300000000, 60, eth)),
		cat(ngSHB(o), ngIDB(o, linkEthernet), ngEPB(o, 0, 1, 60, eth))[:60],
	} {
		f.Add(seed)
	}
	for _, h := range hostileCaptures() {
		f.Add(h.data)
	}
	for _, name := range []string{"http/get.pcap", "pcapng-multi-interface.pcapng", "linux_dlt_sll2.pcap", "vlan-pcp-dei.pcapng"} {
		data, err := os.ReadFile(filepath.Join(corpusDir(f), "pcaps", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		src := newFileSource("fuzz", bytes.NewReader(data))
		var fr frame
		var err error
		for err = src.next(&fr); err == nil; err = src.next(&fr) {
			if len(fr.data) > maxFileFrame || fr.wire < len(fr.data) || fr.link < -1 || fr.link > 0xffff {
				t.Fatalf("frame of %d bytes, wire %d, link %d", len(fr.data), fr.wire, fr.link)
			}
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 2*captureBuffer || cap(src.buf) != captureBuffer || len(src.ifaces) > maxInterfaces {
			t.Fatalf("%d bytes allocated, a buffer of %d, %d interfaces", n, cap(src.buf), len(src.ifaces))
		}
		if err != io.EOF && (!strings.HasPrefix(err.Error(), "-r fuzz: ") || strings.Contains(err.Error(), "\n")) {
			t.Fatalf("error %q", err)
		}

		// The same bytes as a pipe that stalls every few bytes.
		all, err1 := readFrames(newFileSource("fuzz", bytes.NewReader(data)))
		stalling := newFileSource("fuzz", &stutterReader{data: data})
		var got []gotFrame
		var err2 error
		for {
			err2 = stalling.next(&fr)
			if err2 == errTimeout {
				continue
			}
			if err2 != nil {
				break
			}
			got = append(got, gotFrame{string(fr.data), fr.ts, fr.wire, fr.link})
		}
		if err2 == io.EOF {
			err2 = nil
		}
		if fmt.Sprint(got, err2) != fmt.Sprint(all, err1) {
			t.Fatalf("read in pieces: %v %v\nread whole: %v %v", got, err2, all, err1)
		}
		readCapture(t, data) // from a file, mapped: the same frames as read

		// pcapgo on a pcap file, with the snap length it checks
		// captured lengths against set to httplog's bound (so that it
		// does not allocate what the file claims).
		if src.format != formatPcap {
			return
		}
		fixed := bytes.Clone(data)
		src.order.PutUint32(fixed[16:], maxFileFrame)
		r, err := pcapgo.NewReader(bytes.NewReader(fixed))
		if err != nil {
			return
		}
		for i := 0; ; i++ {
			pd, ci, err := r.ReadPacketData()
			if err != nil {
				// pcapgo takes a record header without data for the end.
				if errors.Is(err, io.EOF) && (i != len(all) || err1 != nil && !strings.Contains(err1.Error(), "unexpected EOF")) {
					t.Fatalf("pcapgo read %d frames to the end, httplog %d, then %v", i, len(all), err1)
				}
				return
			}
			if i >= len(all) {
				t.Fatalf("pcapgo read frame %d, httplog stopped at %d: %v", i, len(all), err1)
			}
			g := all[i]
			link := src.order.Uint32(data[20:])
			off := pcapHeaderLen // of the record, to find its fraction
			for _, prev := range all[:i] {
				off += pcapRecordLen + len(prev.data)
			}
			frac := uint64(src.order.Uint32(data[off+4:])) * uint64(src.scale)
			if g.data != string(pd) || g.wire != ci.Length ||
				(frac < 1<<32 && g.ts != ci.Timestamp.UnixNano()) ||
				(link < 256 && g.link != int(r.LinkType())) {
				t.Fatalf("frame %d: httplog %v, pcapgo %q ts %d wire %d link %d", i, g, pd, ci.Timestamp.UnixNano(), ci.Length, r.LinkType())
			}
		}
	})
}
