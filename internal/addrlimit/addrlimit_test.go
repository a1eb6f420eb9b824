package addrlimit

import "testing"

// TestKey: IPv4 clients count one by one (however written), IPv6 clients
// by their /64, with or without a port.
func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":                "192.0.2.7",
		"192.0.2.7:1935":           "192.0.2.7",
		"::ffff:192.0.2.7":         "192.0.2.7",
		"[::ffff:192.0.2.7]:1":     "192.0.2.7",
		"2001:db8:1:2::a":          "2001:db8:1:2::/64",
		"[2001:db8:1:2::a]:1935":   "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:1": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:1":         "fe80::/64",
		"garbage":                  "garbage",
	} {
		if got := Key(in); got != want {
			t.Errorf("Key(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCounter: a key gets max slots and no more, other keys are not
// affected, a released slot can be taken again (once, however often
// release is called), and keys without slots are forgotten.
func TestCounter(t *testing.T) {
	var c Counter
	var rel []func()
	for i := range 3 {
		r, ok := c.Acquire("a", 3)
		if !ok {
			t.Fatalf("slot %d of 3 refused", i+1)
		}
		rel = append(rel, r)
	}
	if _, ok := c.Acquire("a", 3); ok {
		t.Fatal("a 4th slot was given with max 3")
	}
	rb, ok := c.Acquire("b", 3)
	if !ok {
		t.Fatal("another key was refused")
	}
	rel[0]()
	rel[0]() // a second call must not free another slot
	if c.Held("a") != 2 {
		t.Fatalf("held %d after one release, want 2", c.Held("a"))
	}
	if _, ok := c.Acquire("a", 3); !ok {
		t.Fatal("a released slot could not be taken again")
	}
	if _, ok := c.Acquire("a", 3); ok {
		t.Fatal("double release freed two slots")
	}
	rb()
	if c.Keys() != 1 {
		t.Fatalf("%d keys remembered, want 1 (b holds none)", c.Keys())
	}
	for range 1000 {
		if _, ok := c.Acquire("u", 0); !ok {
			t.Fatal("max 0 must not limit")
		}
	}
}
