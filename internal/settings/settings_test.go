package settings

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type level int

func (l *level) String() string { return [...]string{"low", "high"}[*l] }
func (l *level) Set(s string) error {
	switch s {
	case "low":
		*l = 0
	case "high":
		*l = 1
	default:
		return errors.New("low or high")
	}
	return nil
}

type inner struct {
	Codecs  []string `flag:"codecs" list:"lower" help:"codecs"`
	Parents []string `flag:"parents" list:"urls" help:"parent URLs"`
	Keys    []string `flag:"keys" help:"keys, case kept"`
	Level   level    `flag:"level" help:"low or high"`
	Runtime func()   // not a setting
}

type sample struct {
	Addr   string        `flag:"addr" help:"address"`
	On     bool          `flag:"on" help:"switch"`
	N      int           `flag:"n" help:"count"`
	Max    int64         `flag:"max" section:"Limits" help:"bytes"`
	Rate   float64       `flag:"rate" help:"per second"`
	Wait   time.Duration `flag:"wait" help:"how long"`
	Config string        `flag:"config" help:"YAML file"`
	Hidden string
	inner  `section:"Inner"`
}

func defaults() sample {
	return sample{Addr: ":80", N: 3, Max: 1 << 20, Wait: time.Second, inner: inner{Codecs: []string{"h264"}}}
}

func parse(t *testing.T, args []string, env map[string]string) (sample, error) {
	t.Helper()
	s := defaults()
	set, err := New("test", "T_", "config", &s)
	if err != nil {
		t.Fatal(err)
	}
	set.FlagSet().SetOutput(new(strings.Builder))
	return s, set.Parse(args, func(k string) string { return env[k] })
}

func TestTypesAndDefaults(t *testing.T) {
	s, err := parse(t, nil, nil)
	if err != nil || !reflect.DeepEqual(s, defaults()) {
		t.Fatalf("nothing set: %+v, %v; want the defaults", s, err)
	}
	s, err = parse(t, []string{"--addr", "h:1", "--on", "--n", "5", "--max", "9", "--rate", "0.5", "--wait", "2m",
		"--codecs", " VP8, H264 ,", "--parents", "http://a:1/,https://b", "--keys", "AbC/,x", "--level", "high"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := sample{Addr: "h:1", On: true, N: 5, Max: 9, Rate: 0.5, Wait: 2 * time.Minute,
		inner: inner{Codecs: []string{"vp8", "h264"}, Parents: []string{"http://a:1", "https://b"}, Keys: []string{"AbC", "x"}, Level: 1}}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	for _, args := range [][]string{{"--parents", "ftp://x"}, {"--n", "many"}, {"--level", "mid"}, {"stray"}} {
		if _, err := parse(t, args, nil); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// Flag beats YAML beats environment beats default; the YAML file can be
// named in the environment; a YAML key that is no setting is an error.
func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("addr: yaml\nn: 7\ncodecs: [VP9, av1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"T_ADDR": "env", "T_N": "8", "T_RATE": "2", "T_CONFIG": file}
	s, err := parse(t, []string{"--n", "9"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 9 || s.Addr != "yaml" || s.Rate != 2 || s.Wait != time.Second || !reflect.DeepEqual(s.Codecs, []string{"vp9", "av1"}) {
		t.Fatalf("got %+v", s)
	}
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("adr: x\n"), 0o600)
	if _, err := parse(t, []string{"--config", bad}, nil); err == nil || !strings.Contains(err.Error(), `unknown setting "adr"`) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := parse(t, nil, map[string]string{"T_WAIT": "soon"}); err == nil || !strings.Contains(err.Error(), "T_WAIT") {
		t.Fatalf("bad env value: %v, want an error naming T_WAIT", err)
	}
}

func TestHelpBySection(t *testing.T) {
	s := defaults()
	set, err := New("test", "T_", "", &s)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	set.PrintDefaults(&b)
	out := b.String()
	i, j, k := strings.Index(out, "-addr string"), strings.Index(out, "\nLimits:\n"), strings.Index(out, "\nInner:\n")
	if i < 0 || j < i || k < j || !strings.Contains(out[j:k], "-max int") || !strings.Contains(out[j:k], "-wait duration") ||
		!strings.Contains(out[k:], "(default h264)") || strings.Contains(out, "Hidden") {
		t.Fatalf("help:\n%s", out)
	}
	if err := set.Parse([]string{"-h"}, func(string) string { return "" }); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}

func TestBadStructs(t *testing.T) {
	type dup struct {
		A string `flag:"a"`
		B string `flag:"a"`
	}
	type unsupported struct {
		C complex64 `flag:"c"`
	}
	type badList struct {
		L []string `flag:"l" list:"upper"`
	}
	type hidden struct {
		inner `flag:"inner"`
	}
	for _, v := range []any{&dup{}, &unsupported{}, &badList{}, &hidden{}, dup{}} {
		if _, err := New("t", "T_", "", v); err == nil {
			t.Errorf("%T accepted", v)
		}
	}
}
