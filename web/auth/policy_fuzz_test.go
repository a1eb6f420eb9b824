package auth

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// FuzzAuthorize: any request, whatever its fields, gets an answer and no
// panic; a granted publish on a gateway that requires tokens is always
// backed by a token for that room and name.
func FuzzAuthorize(f *testing.F) {
	good, err := Mint(key, Request{Room: "r", Identity: "alice", Grants: []string{GrantPublish}, TTL: time.Hour}, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add("publish", "whip", "r", "alice", good, "127.0.0.1", "localhost", false)
	f.Add("read", "whep", "r", "alice", clusterKey, "198.51.100.7", "gw", false)
	f.Add("admin", "api", "", "", adminKey, "::1", "[::1]", true)
	f.Add("room", "events", "r", "", "", "127.0.0.1", "attacker.example", false)
	p, err := NewPolicy(PolicyConfig{Mode: ModeOn, Key: key, AdminKey: adminKey, ClusterKey: clusterKey})
	if err != nil {
		f.Fatal(err)
	}
	open, err := NewPolicy(PolicyConfig{Mode: ModeAuto, AdminKey: adminKey, ClusterKey: clusterKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, action, proto, room, name, cred, client, host string, inURL bool) {
		addr, _ := netip.ParseAddr(client)
		a := Access{Action: Action(action), Protocol: Protocol(proto), Room: room, Name: name, Credential: cred,
			CredentialInURL: inURL, Client: addr, Host: host}
		d, err := p.Authorize(a)
		if err == nil && a.Action == ActionPublish {
			if d.Claims == nil || d.Claims.Room != room ||
				(name != d.Claims.Identity && name != d.Claims.Identity+ScreenSuffix) || strings.HasSuffix(d.Claims.Identity, ScreenSuffix) {
				t.Fatalf("publish of %s/%s granted with %+v", room, name, d)
			}
		}
		if err == nil && d.Open {
			t.Fatalf("open decision on a gateway with auth on: %+v", a)
		}
		if d, err := open.Authorize(a); err == nil && d.Open && (!addr.Unmap().IsLoopback() || (a.Protocol.httpLike() && !open.hostAllowed(host))) {
			t.Fatalf("open access for %+v", a)
		}
	})
}
