package gateway

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/livegate/livegate/web/auth"
)

// newPolicy builds and validates the access policy of cfg.
func newPolicy(cfg Config) (*auth.Policy, error) {
	prev := make([][]byte, len(cfg.AuthPreviousKeys))
	for i, k := range cfg.AuthPreviousKeys {
		prev[i] = []byte(k)
	}
	var key []byte
	if cfg.AuthKey != "" {
		key = []byte(cfg.AuthKey)
	}
	return auth.NewPolicy(auth.PolicyConfig{Mode: auth.Mode(cfg.AuthMode), Key: key, PreviousKeys: prev,
		AdminKey: cfg.AdminKey, ClusterKey: cfg.ClusterKey, OpenHosts: cfg.OpenHosts})
}

func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", s)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// checkAuth refuses listeners an open gateway would expose and says
// loudly how open the gateway is.
func (g *Gateway) checkAuth() error {
	if err := g.policy.CheckListener("http", g.ln.Addr()); err != nil {
		return err
	}
	switch {
	case g.policy.Mode() == auth.ModeOff:
		g.log.Warn("AUTH IS OFF: clients on this machine can publish, watch and administer without a token", "http", g.ln.Addr().String())
	case g.policy.Open():
		g.log.Warn("NO AUTH KEY: publishing and watching are open to clients on this machine only; " +
			"set --auth-key (LIVEGATE_AUTH_KEY) so others can use tokens")
	}
	return nil
}
