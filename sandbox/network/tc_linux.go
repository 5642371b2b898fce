package network

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// limitBandwidth limits a job to bps bytes per second each way, entirely on
// the host's end of its veth, out of the job's reach: what the host sends
// to the job (its downloads) through a token bucket (tbf) that queues, and
// what the job sends (its uploads) by policing the veth's ingress, which
// drops the excess (TCP then slows down to the rate).
func limitBandwidth(host netlink.Link, bps uint64) error {
	idx := host.Attrs().Index
	burst := burstFor(bps)
	tbf := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       bps,
		// Queue up to 100 ms worth of data on top of the burst.
		Limit:  uint32(min(bps/10+uint64(burst), 1<<31)),
		Buffer: netlink.Xmittime(bps, burst),
	}
	if err := netlink.QdiscAdd(tbf); err != nil {
		return fmt.Errorf("tbf on %s: %w", host.Attrs().Name, err)
	}
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := netlink.QdiscAdd(ingress); err != nil {
		return fmt.Errorf("ingress qdisc on %s: %w", host.Attrs().Name, err)
	}
	police := netlink.NewPoliceAction()
	police.Rate = uint32(min(bps, 1<<32-1))
	police.Burst = burst
	police.ExceedAction = netlink.TC_POLICE_SHOT
	police.NotExceedAction = netlink.TC_POLICE_OK
	filter := &netlink.MatchAll{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: netlink.MakeHandle(0xffff, 0), Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions:     []netlink.Action{police},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("policing filter on %s: %w", host.Attrs().Name, err)
	}
	return nil
}

// burstFor is the token bucket's depth for a rate: 10 ms worth of data,
// at least 32 KiB (about twenty full frames) so that slow rates still pass
// a full frame at once.
func burstFor(bps uint64) uint32 {
	return uint32(min(max(bps/100, 32<<10), 1<<30))
}
