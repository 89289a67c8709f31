// Command readfloor is the floor of the offline benchmark (bench/offline.sh):
// it only reads a pcap file, packet by packet, with gopacket/pcapgo's
// ZeroCopyReadPacketData behind a 1 MiB bufio.Reader (how httplog -r read
// files before it mapped them), and counts the packets and their bytes.
// No program that reads the file through pcapgo can be faster.
//
// With -map it maps the whole file instead, as httplog -r now reads a
// regular file (in windows), and walks the records, reading only each
// record's header: the floor of reading through a mapping, where the
// cost is the first touch of each record's memory.
//
// Usage:
//
//	readfloor [-map] FILE.pcap
package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	mapped := len(args) == 2 && args[0] == "-map"
	if mapped {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: readfloor [-map] FILE.pcap")
		return 2
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "readfloor: %v\n", err)
		return 1
	}
	defer f.Close()
	start := time.Now()
	if mapped {
		return walk(f, start)
	}
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

// walk maps the pcap file f whole and walks its records.
func walk(f *os.File, start time.Time) int {
	info, err := f.Stat()
	if err != nil || info.Size() < 24 {
		fmt.Fprintf(os.Stderr, "readfloor: %s: not a pcap file (%v)\n", f.Name(), err)
		return 1
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(info.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		fmt.Fprintf(os.Stderr, "readfloor: %s: %v\n", f.Name(), err)
		return 1
	}
	defer unix.Munmap(b)
	unix.Madvise(b, unix.MADV_SEQUENTIAL)
	var order binary.ByteOrder = binary.LittleEndian
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
	case 0xd4c3b2a1, 0x4d3cb2a1:
		order = binary.BigEndian
	default:
		fmt.Fprintf(os.Stderr, "readfloor: %s: not a pcap file\n", f.Name())
		return 1
	}
	var packets, bytes uint64
	for r := 24; r+16 <= len(b); packets++ {
		n := int(order.Uint32(b[r+8:]))
		bytes += uint64(n)
		r += 16 + n
	}
	elapsed := time.Since(start)
	fmt.Printf("readfloor -map: packets=%d captured_bytes=%d in %.3fs: %.0f packets/s\n",
		packets, bytes, elapsed.Seconds(), float64(packets)/elapsed.Seconds())
	return 0
}
