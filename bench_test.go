package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
)

// syntheticCapture writes a capture shaped like a web server's traffic:
// per connection a handshake, a request, a response of a few segments,
// ACKs and a close, 12 packets of which 2 are HTTP starts (1 in 6, as in
// the nginx captures of bench/). It returns the path and packet count.
func syntheticCapture(b *testing.B, conns int) (string, int) {
	b.Helper()
	body := strings.Repeat("x", 1448)
	var all [][]byte
	for c := 0; c < conns; c++ {
		client := fmt.Sprintf("10.%d.%d.%d", c>>16&255, c>>8&255, c&255|1)
		port := uint16(20000 + c%40000)
		req := fmt.Sprintf("GET /static/img/%d.png HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\nAccept: image/avif,image/webp,*/*\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n\r\n", c)
		resp := "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 25 Nov 2026 12:00:00 GMT\r\nContent-Type: image/png\r\nContent-Length: 4344\r\nLast-Modified: Mon, 24 Nov 2026 08:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"6743-10f8\"\r\nAccept-Ranges: bytes\r\n\r\n"
		// Sequence numbers as a real connection has them, so that -pair
		// sees one request and its response, and the close frees the entry.
		cs, ss := uint32(c)*7919, uint32(c)*104729
		seg := func(fromClient bool, seq, ack uint32, flags byte, payload string) []byte {
			if fromClient {
				return ether(etherIPv4, nil, ipv4Packet(client, "192.0.2.80", 6, 20, 0, tcpSegmentAt(port, 80, 20, seq, ack, flags, payload)))
			}
			return ether(etherIPv4, nil, ipv4Packet("192.0.2.80", client, 6, 20, 0, tcpSegmentAt(80, port, 20, seq, ack, flags, payload)))
		}
		const syn, fin, psh, ack = 0x02, 0x01, 0x08, 0x10
		r1 := resp + body[:1448-len(resp)]
		q, s := cs+1+uint32(len(req)), ss+1+4*1448
		all = append(all,
			seg(true, cs, 0, syn, ""),
			seg(false, ss, cs+1, syn|ack, ""),
			seg(true, cs+1, ss+1, ack, ""),
			seg(true, cs+1, ss+1, psh|ack, req),
			seg(false, ss+1, q, ack, ""),
			seg(false, ss+1, q, psh|ack, r1),
			seg(false, ss+1+1448, q, ack, body),
			seg(false, ss+1+2*1448, q, ack, body),
			seg(true, q, ss+1+3*1448, ack, ""),
			seg(false, ss+1+3*1448, q, psh|ack, body),
			seg(true, q, s, fin|ack, ""),
			seg(false, s, q+1, fin|ack, ""),
		)
	}
	start := time.Unix(1764000000, 0)
	path := writePcapAt(b, layers.LinkTypeEthernet, all, func(i int) time.Time { return start.Add(time.Duration(i+1) * 7 * time.Microsecond) })
	return path, len(all)
}

// BenchmarkOffline runs the whole pipeline on a capture file, beside the
// floor: a loop that only reads the file. Compare ns/packet side by side.
func BenchmarkOffline(b *testing.B) {
	path, packets := syntheticCapture(b, 20000) // 240,000 packets, 170 MB
	b.Run("readfloor", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			src, err := openFile(path)
			if err != nil {
				b.Fatal(err)
			}
			var f frame
			for src.next(&f) == nil {
			}
			src.close()
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
	})
	for _, cpu := range []int{1, 2} {
		b.Run(fmt.Sprintf("httplog-cpu%d", cpu), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				cfg, err := loadConfig([]string{"-r", path, "-d", "-", "-cpu", fmt.Sprint(cpu)}, func(string) string { return "" }, io.Discard)
				if err != nil {
					b.Fatal(err)
				}
				if code := serve(context.Background(), cfg, io.Discard, io.Discard, nil); code != 0 {
					b.Fatalf("exit %d", code)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
		})
	}
}

// BenchmarkParsers times the parser stage alone: the synthetic capture is
// read and judged by a reader once, before the timer, into batches that
// each round hands to a new parser, in each format, with and without
// -pair. It shows what formatting and pairing cost without the reading,
// which dominates BenchmarkOffline.
func BenchmarkParsers(b *testing.B) {
	path, packets := syntheticCapture(b, 20000)
	for _, v := range []struct {
		name string
		form lineFormat
		pair bool
	}{
		{"text", lineFormat{}, false},
		{"text-pair", lineFormat{}, true},
		{"json", lineFormat{json: true}, false},
		{"json-pair", lineFormat{json: true}, true},
	} {
		b.Run(v.name, func(b *testing.B) {
			batches := judgedBatches(b, path, packets, v.pair)
			var locals atomic.Pointer[localSet]
			locals.Store(&localSet{prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.80/32")}})
			var lb lineBatch
			lines := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				p := &parser{locals: &locals, clock: newClock(time.UTC), form: v.form, metrics: &parserSet{durations: &durationSet{}}}
				if v.pair {
					pw := newPairWorker(65536, 30*time.Second, v.form, &counterSet{})
					p.pair = &pw
				}
				b.StartTimer()
				for _, pb := range batches {
					p.batch(pb, &lb)
					lines += len(lb.lines)
					lb.reset()
				}
			}
			if lines != b.N*packets/6 {
				b.Fatalf("%d lines in %d rounds, want %d a round", lines, b.N, packets/6)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*packets), "ns/packet")
		})
	}
}

// judgedBatches reads the capture at path through a reader's handle, as
// the reader stage does, and returns the batches it fills.
func judgedBatches(b *testing.B, path string, packets int, pair bool) []*pktBatch {
	b.Helper()
	src, err := openFile(path)
	if err != nil {
		b.Fatal(err)
	}
	defer src.close()
	q, free := make(chan *pktBatch, packets), make(chan *pktBatch, packets)
	for range packets/batchSize + 2 {
		free <- &pktBatch{}
	}
	r := newReader(src, readerConfig{ports: []uint16{80}, pair: pair}, []chan *pktBatch{q}, free, &counterSet{})
	var f frame
	var p packet
	for src.next(&f) == nil {
		r.handle(&f, &p)
	}
	r.sendAll()
	close(q)
	var batches []*pktBatch
	for pb := range q {
		batches = append(batches, pb)
	}
	return batches
}
