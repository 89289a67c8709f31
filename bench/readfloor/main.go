// Command readfloor is the floor of the offline benchmark (bench/offline.sh):
// it only reads a pcap file, packet by packet, with gopacket/pcapgo's
// ZeroCopyReadPacketData behind the same 1 MiB bufio.Reader as httplog -r,
// and counts the packets and their bytes. No program that reads the file
// through pcapgo can be faster, so httplog's time is measured against it.
//
// Usage:
//
//	readfloor FILE.pcap
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket/pcapgo"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: readfloor FILE.pcap")
		return 2
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "readfloor: %v\n", err)
		return 1
	}
	defer f.Close()
	start := time.Now()
	r, err := pcapgo.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		fmt.Fprintf(os.Stderr, "readfloor: %s: %v\n", args[0], err)
		return 1
	}
	var packets, bytes uint64
	for {
		data, _, err := r.ZeroCopyReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "readfloor: %s: %v\n", args[0], err)
			return 1
		}
		packets++
		bytes += uint64(len(data))
	}
	elapsed := time.Since(start)
	fmt.Printf("readfloor: packets=%d captured_bytes=%d in %.3fs: %.0f packets/s\n",
		packets, bytes, elapsed.Seconds(), float64(packets)/elapsed.Seconds())
	return 0
}
