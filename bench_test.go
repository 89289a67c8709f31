package main

import (
	"context"
	"fmt"
	"io"
	"strings"
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
		all = append(all,
			ipv4HTTP(client, "192.0.2.80", port, 80, ""), // SYN
			ipv4HTTP("192.0.2.80", client, 80, port, ""), // SYN-ACK
			ipv4HTTP(client, "192.0.2.80", port, 80, ""), // ACK
			ipv4HTTP(client, "192.0.2.80", port, 80, req),
			ipv4HTTP("192.0.2.80", client, 80, port, ""),
			ipv4HTTP("192.0.2.80", client, 80, port, resp+body[:1448-len(resp)]),
			ipv4HTTP("192.0.2.80", client, 80, port, body),
			ipv4HTTP("192.0.2.80", client, 80, port, body),
			ipv4HTTP(client, "192.0.2.80", port, 80, ""),
			ipv4HTTP("192.0.2.80", client, 80, port, body),
			ipv4HTTP(client, "192.0.2.80", port, 80, ""), // FIN
			ipv4HTTP("192.0.2.80", client, 80, port, ""), // FIN
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
