package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/cmd/internal/gateway"
	"github.com/livegate/livegate/egress/hls"
	"github.com/livegate/livegate/egress/whep"
	ingestrtmp "github.com/livegate/livegate/ingest/rtmp"
	"github.com/livegate/livegate/ingest/whip"
	lgsettings "github.com/livegate/livegate/internal/settings"
	"github.com/livegate/livegate/recorder"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/tree"
	"github.com/livegate/livegate/web"
	"github.com/livegate/livegate/web/rooms"
	"github.com/livegate/livegate/web/webhooks"
)

func boundFlags(t *testing.T, s settings) *flag.FlagSet {
	t.Helper()
	set, err := lgsettings.New("livegate", envPrefix, "config", &s)
	if err != nil {
		t.Fatal(err)
	}
	return set.FlagSet()
}

// Users' configs, scripts and unit files name settings: every flag, its
// environment variable and its default stay as they were.
// testdata/settings.txt was written by livegate before the settings moved
// into the packages' Params; a new setting is added to it on purpose.
func TestSettingsPinned(t *testing.T) {
	b, err := os.ReadFile("testdata/settings.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSpace(string(b)), "\n")
	var got []string
	boundFlags(t, defaultSettings()).VisitAll(func(f *flag.Flag) {
		got = append(got, fmt.Sprintf("%s\t%s\t%s", f.Name, envName(f.Name), f.DefValue))
	})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("settings changed:\n got %d: %q\nwant %d: %q", len(got), got, len(want), want)
	}

	// Every setting is a YAML key and an environment variable: naming each
	// with its default value is accepted and changes nothing.
	var yaml strings.Builder
	envs := map[string]string{}
	for _, line := range want {
		f := strings.Split(line, "\t")
		if f[0] == "config" || f[2] == "" {
			continue
		}
		fmt.Fprintf(&yaml, "%s: %q\n", f[0], f[2])
		envs[f[1]] = f[2]
	}
	cfg := filepath.Join(t.TempDir(), "all.yaml")
	if err := os.WriteFile(cfg, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	def := defaultSettings()
	for name, e := range map[string]map[string]string{"yaml": {"LIVEGATE_CONFIG": cfg}, "env": envs} {
		s, err := load(nil, env(e), io.Discard)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		s.ConfigFile = ""
		if !reflect.DeepEqual(*s, def) {
			t.Errorf("%s with every default named: %+v\nwant %+v", name, *s, def)
		}
	}
}

// A default is written once, in the package that uses it: livegate starts
// from each package's DefaultParams, and a changed value there is the
// flag's default, what --help shows and what a start without settings
// gets.
func TestDefaultsWrittenOnce(t *testing.T) {
	d := gateway.DefaultConfig()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"relay", d.RelayParams, relay.DefaultParams()},
		{"whip", d.WHIPParams, whip.DefaultParams()},
		{"whep", d.WHEPParams, whep.DefaultParams()},
		{"tree", d.TreeParams, tree.DefaultParams()},
		{"rooms", d.RoomsParams, rooms.DefaultParams()},
		{"web", d.WebParams, web.DefaultParams()},
		{"recorder", d.RecorderParams, recorder.DefaultParams()},
		{"hls", d.HLSParams, hls.DefaultParams()},
		{"rtmp ingest", d.RTMPInParams, ingestrtmp.DefaultParams()},
		{"webhooks", d.WebhookParams, webhooks.DefaultParams()},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: gateway.DefaultConfig has %+v, the package's DefaultParams %+v", c.name, c.got, c.want)
		}
	}

	// As if relay.DefaultParams said 42 s and whep's 7 viewers.
	base := defaultSettings()
	base.Gateway.Grace = 42 * time.Second
	base.Gateway.WHEPParams.MaxSessions = 7
	fs := boundFlags(t, base)
	if g, v := fs.Lookup("grace").DefValue, fs.Lookup("max-viewers").DefValue; g != "42s" || v != "7" {
		t.Errorf("flag defaults grace=%s max-viewers=%s, want 42s and 7", g, v)
	}
	var help strings.Builder
	if _, err := loadFrom(base, []string{"-h"}, env(nil), &help); err != flag.ErrHelp {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(help.String(), "come back (default 42s)") {
		t.Errorf("--help does not show the changed grace:\n%s", help.String())
	}
	s, err := loadFrom(base, nil, env(nil), io.Discard)
	if err != nil || s.Gateway.Grace != 42*time.Second || s.Gateway.WHEPParams.MaxSessions != 7 {
		t.Fatalf("loaded %v, %d, %v; want 42s and 7", s.Gateway.Grace, s.Gateway.WHEPParams.MaxSessions, err)
	}
}
