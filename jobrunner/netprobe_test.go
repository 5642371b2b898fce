package jobrunner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// netProbeEnv, set in a job's environment, makes the test binary a network
// probe (TestMain runs netProbe instead of the tests): the networking tests
// run it as the job, so that they need no wget or nc in the VM.
const netProbeEnv = "TELEHANDLER_NETPROBE"

// probeTimeout bounds each connection of the probe: a dropped packet is a
// timeout. Generous: the VM emulates its CPUs on a loaded machine, where
// a DNS lookup and a connection took over 7 s.
const probeTimeout = 15 * time.Second

// netProbe runs each operation in args and prints one line per operation:
// "<op> <arg> ok <detail>" or "<op> <arg> fail <error>". Operations:
//
//	addr              the IPv4 address of eth0
//	fetch:URL         HTTP GET (names resolved through /etc/resolv.conf); detail: bytes seconds
//	post:URL:N        HTTP POST of N bytes; detail: seconds
//	dial:HOST:PORT    a TCP connection
//	listen:PORT       accept connections on PORT and answer "hi" until killed
//	conns:HOST:PORT:N N TCP connections at once, held until all were tried; detail: how many connected
//	mac               the MAC address of eth0
//	udp:HOST:PORT:DATA         one UDP datagram
//	spoofudp:SRC:HOST:PORT:DATA one UDP datagram forged from SRC (raw socket)
//	arpspoof:IP       a gratuitous ARP claiming IP for this job's MAC
//
// The operations run at once (a blocked connection costs one timeout, not
// one each), except listen, which runs last; the lines come in the order
// of args. It exits 0 when every operation succeeded, 1 otherwise.
func netProbe(args []string) int {
	lines := make([]string, len(args))
	failed := make([]bool, len(args))
	var wg sync.WaitGroup
	var listen []string
	for i, a := range args {
		op, arg, _ := strings.Cut(a, ":")
		if op == "listen" {
			listen = append(listen, arg)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			detail, err := probeOp(op, arg)
			if err != nil {
				failed[i] = true
				lines[i] = fmt.Sprintf("%s %s fail %v\n", op, arg, err)
				return
			}
			lines[i] = fmt.Sprintf("%s %s ok %s\n", op, arg, detail)
		}()
	}
	wg.Wait()
	rc := 0
	for i := range lines {
		fmt.Print(lines[i])
		if failed[i] {
			rc = 1
		}
	}
	for _, port := range listen {
		if _, err := probeOp("listen", port); err != nil {
			fmt.Printf("listen %s fail %v\n", port, err)
			rc = 1
		}
	}
	return rc
}

func probeOp(op, arg string) (string, error) {
	client := &http.Client{Timeout: 10 * probeTimeout, Transport: &http.Transport{
		DialContext: (&net.Dialer{Timeout: probeTimeout}).DialContext}}
	switch op {
	case "addr":
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return "", err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return "", err
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String(), nil
			}
		}
		return "", fmt.Errorf("no IPv4 address on eth0")
	case "fetch":
		t0 := time.Now()
		resp, err := client.Get(arg)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %s", resp.Status)
		}
		return fmt.Sprintf("%d %.3f", n, time.Since(t0).Seconds()), nil
	case "post":
		i := strings.LastIndexByte(arg, ':')
		n, err := strconv.Atoi(arg[i+1:])
		if err != nil {
			return "", err
		}
		t0 := time.Now()
		resp, err := client.Post(arg[:i], "application/octet-stream", bytes.NewReader(make([]byte, n)))
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		return fmt.Sprintf("%.3f", time.Since(t0).Seconds()), nil
	case "dial":
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", arg)
		if err != nil {
			return "", err
		}
		c.Close()
		return "connected", nil
	case "conns":
		// conns:HOST:PORT:N: N connections at once, held open until all
		// were tried; detail: how many connected.
		i := strings.LastIndexByte(arg, ':')
		n, err := strconv.Atoi(arg[i+1:])
		if err != nil {
			return "", err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var open []net.Conn
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", arg[:i], 5*time.Second)
				if err == nil {
					mu.Lock()
					open = append(open, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, c := range open {
			c.Close()
		}
		return strconv.Itoa(len(open)), nil
	case "listen":
		ln, err := net.Listen("tcp", ":"+arg)
		if err != nil {
			return "", err
		}
		fmt.Printf("listen %s ok listening\n", arg)
		os.Stdout.Sync()
		for {
			c, err := ln.Accept()
			if err != nil {
				return "", err
			}
			c.Write([]byte("hi\n"))
			c.Close()
		}
	}
	return probeRawOp(op, arg)
}
