package triggerer

import (
	"fmt"
	"net/netip"
	"syscall"
)

// destinationPolicy decides which addresses the HTTP tracker may dial: public
// unicast addresses, plus the networks allowed explicitly.
type destinationPolicy struct {
	allowed []netip.Prefix
}

// deniedNetworks are denied by default beyond what netip classifies (loopback,
// private, link-local, multicast, unspecified): addresses that are not public
// although they look like global unicast.
var deniedNetworks = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),     // "this network"
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space (carrier NAT; some clouds' metadata)
	netip.MustParsePrefix("192.0.0.0/24"),  // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"), // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),   // reserved, and broadcast
	netip.MustParsePrefix("fec0::/10"),     // deprecated site-local
	netip.MustParsePrefix("2001:db8::/32"), // documentation
	netip.MustParsePrefix("100::/64"),      // discard-only
}

// nat64 embeds an IPv4 address in its last 32 bits.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// allows reports whether the tracker may connect to addr.
func (p destinationPolicy) allows(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, n := range p.allowed {
		if n.Contains(addr) {
			return true
		}
	}
	return isPublic(addr)
}

// isPublic reports whether addr is a public unicast address; a NAT64 address is
// judged by the IPv4 address it embeds.
func isPublic(addr netip.Addr) bool {
	if nat64.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte(b[12:]))
	}
	if !addr.IsGlobalUnicast() || addr.IsPrivate() {
		return false
	}
	for _, n := range deniedNetworks {
		if n.Contains(addr) {
			return false
		}
	}
	return true
}

// destinationDeniedError is a dial the policy refused. It does not name the
// address: the message becomes the task's error, and whoever wrote the job data
// should not learn what an internal name resolves to.
type destinationDeniedError struct{}

func (*destinationDeniedError) Error() string {
	return "destination is not allowed: not a public address (see HTTPTrackerConfig.AllowedNetworks)"
}

// control is net.Dialer.Control: it runs after DNS resolution, before connecting,
// for every address tried, so a DNS answer cannot smuggle in a denied address.
func (p destinationPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("destination %q: %w", address, err)
	}
	if !p.allows(ap.Addr()) {
		return &destinationDeniedError{}
	}
	return nil
}
