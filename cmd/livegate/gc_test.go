package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestApplyGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	applyGC(defaultGCPercent, "", log)
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("default: GC percent %d, want %d", got, defaultGCPercent)
	}
	applyGC(30, "200", log) // the operator's GOGC wins
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set: GC percent %d, want it left at 100", got)
	}
	for _, bad := range []string{"5", "1001"} {
		if _, err := load([]string{"--gc-percent", bad}, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("gc-percent %s accepted", bad)
		}
	}
}
