package main

import (
	"encoding/binary"
	"net/netip"
)

// Frame builders for tests: each layer is written by hand, as a reader of
// the RFCs would, so that the decoder is checked against an independent
// encoding rather than against itself.

// tcpSegment is a TCP header of hl bytes (options filled with NOPs) and a payload.
func tcpSegment(sport, dport uint16, hl int, payload string) []byte {
	return tcpSegmentAt(sport, dport, hl, 1000, 0, 0x18, payload) // PSH, ACK
}

// tcpSegmentAt is tcpSegment with the sequence and acknowledgement
// numbers and the flags given.
func tcpSegmentAt(sport, dport uint16, hl int, seq, ack uint32, flags byte, payload string) []byte {
	b := make([]byte, hl, hl+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12] = byte(hl/4) << 4
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:], 65535)
	for i := 20; i < hl; i++ {
		b[i] = 1 // NOP option
	}
	return append(b, payload...)
}

// ipv4Packet wraps a transport payload; hl > 20 adds NOP options.
func ipv4Packet(src, dst string, proto byte, hl int, fragOff uint16, l4 []byte) []byte {
	b := make([]byte, hl, hl+len(l4))
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(hl+len(l4)))
	binary.BigEndian.PutUint16(b[6:], fragOff)
	b[8] = 64
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 20; i < hl; i++ {
		b[i] = 1 // NOP option
	}
	return append(b, l4...)
}

// ipv6Packet wraps a transport payload behind optional extension headers
// (each given as next-header-less bytes: the builder chains them).
func ipv6Packet(src, dst string, proto byte, exts [][]byte, extTypes []byte, l4 []byte) []byte {
	b := make([]byte, 40)
	b[0] = 0x60
	first := proto
	if len(extTypes) > 0 {
		first = extTypes[0]
	}
	b[6] = first
	b[7] = 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	for i, e := range exts {
		next := proto
		if i+1 < len(extTypes) {
			next = extTypes[i+1]
		}
		e[0] = next
		b = append(b, e...)
	}
	b = append(b, l4...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// ether puts an Ethernet header, with VLAN tags (TPIDs given), in front.
func ether(etype uint16, tpids []uint16, l3 []byte) []byte {
	b := []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	for i, tpid := range tpids {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // VLAN ID
	}
	b = binary.BigEndian.AppendUint16(b, etype)
	return append(b, l3...)
}

func ipv4HTTP(src, dst string, sport, dport uint16, payload string) []byte {
	return ether(etherIPv4, nil, ipv4Packet(src, dst, 6, 20, 0, tcpSegment(sport, dport, 20, payload)))
}

func ipv6HTTP(src, dst string, sport, dport uint16, payload string) []byte {
	return ether(etherIPv6, nil, ipv6Packet(src, dst, 6, nil, nil, tcpSegment(sport, dport, 20, payload)))
}
