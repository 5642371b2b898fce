package jobrunner

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"
)

// probeRawOp runs the probe's operations that forge packets: what a root
// job with CAP_NET_RAW can do.
func probeRawOp(op, arg string) (string, error) {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil && op != "udp" {
		return "", err
	}
	switch op {
	case "mac":
		return ifi.HardwareAddr.String(), nil
	case "udp":
		f := strings.SplitN(arg, ":", 3)
		if len(f) != 3 {
			return "", fmt.Errorf("want HOST:PORT:DATA")
		}
		c, err := net.Dial("udp", f[0]+":"+f[1])
		if err != nil {
			return "", err
		}
		defer c.Close()
		_, err = c.Write([]byte(f[2]))
		return "sent", err
	case "spoofudp":
		f := strings.SplitN(arg, ":", 4)
		if len(f) != 4 {
			return "", fmt.Errorf("want SRC:HOST:PORT:DATA")
		}
		src, err1 := netip.ParseAddr(f[0])
		dst, err2 := netip.ParseAddr(f[1])
		var port uint16
		_, err3 := fmt.Sscan(f[2], &port)
		if err1 != nil || err2 != nil || err3 != nil {
			return "", fmt.Errorf("bad spoofudp argument %q", arg)
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		payload := []byte(f[3])
		pkt := make([]byte, 28+len(payload))
		pkt[0] = 0x45
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		pkt[8] = 64
		pkt[9] = unix.IPPROTO_UDP
		s4, d4 := src.As4(), dst.As4()
		copy(pkt[12:], s4[:])
		copy(pkt[16:], d4[:])
		binary.BigEndian.PutUint16(pkt[20:], 40000)
		binary.BigEndian.PutUint16(pkt[22:], port)
		binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
		copy(pkt[28:], payload)
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: d4}); err != nil {
			return "", err
		}
		return "sent", nil
	case "arpspoof":
		ip, err := netip.ParseAddr(arg)
		if err != nil {
			return "", err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return "", err
		}
		defer unix.Close(fd)
		mac := ifi.HardwareAddr
		frame := make([]byte, 42)
		copy(frame[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(frame[6:12], mac)
		binary.BigEndian.PutUint16(frame[12:], unix.ETH_P_ARP)
		arp := frame[14:]
		binary.BigEndian.PutUint16(arp[0:], 1)      // Ethernet
		binary.BigEndian.PutUint16(arp[2:], 0x0800) // IPv4
		arp[4], arp[5] = 6, 4
		binary.BigEndian.PutUint16(arp[6:], 2) // reply
		a4 := ip.As4()
		copy(arp[8:14], mac)
		copy(arp[14:18], a4[:])
		copy(arp[18:24], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		copy(arp[24:28], a4[:])
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Protocol: htons(unix.ETH_P_ARP)}
		copy(sa.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		for range 3 {
			if err := unix.Sendto(fd, frame, 0, sa); err != nil {
				return "", err
			}
		}
		return "sent", nil
	}
	return "", fmt.Errorf("unknown probe operation %q", op)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
