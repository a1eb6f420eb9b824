package main

import (
	"io"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.url != "http://127.0.0.1:8080" || c.path != "bench/cam" || c.viewers != 50 || c.ramp != 50 ||
		c.duration != 20*time.Second || !c.publish || c.settle != 500*time.Millisecond || c.client != "lite" ||
		c.timeout != 500*time.Millisecond+time.Second+20*time.Second+60*time.Second {
		t.Errorf("defaults: %+v", c)
	}
	c, err = parseFlags([]string{"--viewers", "200", "--ramp", "20", "--duration", "5s", "--path", "/a/b/", "--settle", "25s"}, io.Discard)
	if err != nil || c.timeout != 25*time.Second+10*time.Second+5*time.Second+60*time.Second || c.path != "a/b" {
		t.Errorf("got %+v, %v", c, err)
	}
	for _, bad := range [][]string{
		{"--viewers", "0"}, {"--ramp", "0"}, {"--duration", "0s"}, {"--path", "nope"}, {"--path", "a/b/c"}, {"extra"},
		{"--settle", "-1s"}, {"--client", "chrome"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSplitLatencies(t *testing.T) {
	s := []latSample{
		{at: 10, ns: 1e6, steady: false},
		{at: 20, ns: 2e6, steady: true},
		{at: 30, ns: 3e6, steady: true},
		{at: 40, ns: 4e6, steady: true}, // after the window
	}
	all, steady, window := split(s, 25, 35)
	if len(all) != 3 || len(steady) != 2 || len(window) != 1 || window[0] != 3 {
		t.Errorf("all %v steady %v window %v", all, steady, window)
	}
}
