// Package settings turns tagged struct fields into command-line flags,
// YAML keys and environment variables, so that each setting is written
// once: its name and meaning in the field's tags, its default in the value
// the struct holds when it is bound (a package's DefaultParams()).
//
// Tags on a field:
//
//	flag:"name"      the setting: flag --name, YAML key name, environment PREFIX_NAME
//	help:"text"      its meaning, for --help
//	list:"lower"     []string: items are lower-cased (codecs, IPs, host names)
//	list:"urls"      []string: every item must be an http(s) URL
//	list:"raw"       []string: items are kept as written (secrets)
//	section:"title"  --help groups under title the settings of a struct
//	                 field, or this setting and the ones after it
//
// A []string is a comma-separated list; items are trimmed and a trailing
// "/" is dropped (except with list:"lower" or list:"raw"). Supported
// types: string, bool, int, int64, float64, time.Duration, []string and
// any type whose pointer is a flag.Value. Struct fields without a flag tag
// are walked for more settings; other untagged fields are not settings.
package settings

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Set is the settings bound from one struct.
type Set struct {
	fs     *flag.FlagSet
	prefix string
	config string
	groups []*group
}

// group is a section of --help; its FlagSet is only printed, never parsed.
type group struct {
	title string
	fs    *flag.FlagSet
}

// New binds every tagged field under v, a pointer to a struct, whose
// current values become the defaults. Environment variables are prefix
// plus the name in upper case with dashes as underscores. config, if not
// empty, is the name of the setting that names a YAML file of settings.
func New(name, prefix, config string, v any) (*Set, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("settings: %T is not a pointer to a struct", v)
	}
	s := &Set{fs: flag.NewFlagSet(name, flag.ContinueOnError), prefix: prefix, config: config}
	if err := s.walk(rv.Elem(), ""); err != nil {
		return nil, err
	}
	if config != "" && s.fs.Lookup(config) == nil {
		return nil, fmt.Errorf("settings: no setting %q names the config file", config)
	}
	return s, nil
}

// FlagSet is the flags of the settings (set its Usage and output there).
func (s *Set) FlagSet() *flag.FlagSet { return s.fs }

// EnvName is the environment variable of a setting.
func EnvName(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func (s *Set) walk(v reflect.Value, title string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		// An embedded struct's exported fields are settable even when
		// its type is not exported.
		if !f.IsExported() && !(f.Anonymous && f.Type.Kind() == reflect.Struct) {
			continue
		}
		name, tagged := f.Tag.Lookup("flag")
		if sec, ok := f.Tag.Lookup("section"); ok && tagged {
			title = sec // this setting and the ones after it
		}
		if !tagged {
			if f.Type.Kind() == reflect.Struct {
				sub := title
				if sec, ok := f.Tag.Lookup("section"); ok {
					sub = sec
				}
				if err := s.walk(v.Field(i), sub); err != nil {
					return err
				}
			}
			continue
		}
		if err := s.add(v.Field(i), f, name, title); err != nil {
			return fmt.Errorf("settings: %s.%s: %w", t, f.Name, err)
		}
	}
	return nil
}

var flagValue = reflect.TypeOf((*flag.Value)(nil)).Elem()

func (s *Set) add(fv reflect.Value, f reflect.StructField, name, title string) error {
	if name == "" || strings.ContainsAny(name, " =,") || strings.HasPrefix(name, "-") {
		return fmt.Errorf("bad setting name %q", name)
	}
	if !fv.CanSet() {
		return errors.New("an unexported field cannot be a setting")
	}
	if s.fs.Lookup(name) != nil {
		return fmt.Errorf("setting %q is defined twice", name)
	}
	help := f.Tag.Get("help")
	mode := f.Tag.Get("list")
	if mode != "" && mode != "lower" && mode != "urls" && mode != "raw" {
		return fmt.Errorf("list:%q is not lower, urls or raw", mode)
	}
	g := s.group(title)
	switch p := fv.Addr().Interface().(type) {
	case *string:
		g.fs.StringVar(p, name, *p, help)
	case *bool:
		g.fs.BoolVar(p, name, *p, help)
	case *int:
		g.fs.IntVar(p, name, *p, help)
	case *int64:
		g.fs.Int64Var(p, name, *p, help)
	case *float64:
		g.fs.Float64Var(p, name, *p, help)
	case *time.Duration:
		g.fs.DurationVar(p, name, *p, help)
	case *[]string:
		g.fs.Var(listValue{p: p, mode: mode}, name, help)
	default:
		if !fv.Addr().Type().Implements(flagValue) {
			return fmt.Errorf("type %s is not supported", f.Type)
		}
		g.fs.Var(fv.Addr().Interface().(flag.Value), name, help)
	}
	// The same Value in both sets: parsing one updates the field, and the
	// group prints the default it had when bound.
	s.fs.Var(g.fs.Lookup(name).Value, name, help)
	return nil
}

func (s *Set) group(title string) *group {
	for _, g := range s.groups {
		if g.title == title {
			return g
		}
	}
	g := &group{title: title, fs: flag.NewFlagSet(title, flag.ContinueOnError)}
	s.groups = append(s.groups, g)
	return g
}

// PrintDefaults writes every setting with its meaning and default, by
// section in the order the struct declares them.
func (s *Set) PrintDefaults(w io.Writer) {
	for _, g := range s.groups {
		if g.title != "" {
			fmt.Fprintf(w, "\n%s:\n", g.title)
		}
		g.fs.SetOutput(w)
		g.fs.PrintDefaults()
	}
}

// Parse fills the struct from args, then from the YAML file the config
// setting names (as a flag, or else in the environment), then from the
// environment; each source sets only what an earlier one left alone, and
// a setting no source names keeps its default. It returns flag.ErrHelp
// for -h.
func (s *Set) Parse(args []string, env func(string) string) error {
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	if s.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", s.fs.Arg(0))
	}
	set := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if s.config != "" {
		file := s.fs.Lookup(s.config).Value.String()
		if !set[s.config] {
			if v := env(EnvName(s.prefix, s.config)); v != "" {
				if err := s.fs.Set(s.config, v); err != nil {
					return fmt.Errorf("%s: %w", EnvName(s.prefix, s.config), err)
				}
				file = v
			}
		}
		if file != "" {
			if err := s.loadYAML(file, set); err != nil {
				return err
			}
		}
	}
	var errs []error
	s.fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == s.config {
			return
		}
		name := EnvName(s.prefix, f.Name)
		if v := env(name); v != "" {
			if err := s.fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// loadYAML sets what the file names and the flags did not. A key that is
// no setting is an error: a typo must not pass for a default.
func (s *Set) loadYAML(path string, set map[string]bool) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == s.config || s.fs.Lookup(k) == nil {
			return fmt.Errorf("config %s: unknown setting %q", path, k)
		}
		if set[k] {
			continue
		}
		if err := s.fs.Set(k, yamlString(m[k])); err != nil {
			return fmt.Errorf("config %s: %s: %w", path, k, err)
		}
		set[k] = true
	}
	return nil
}

// yamlString is a YAML value as a flag would take it: a sequence becomes a
// comma-separated list.
func yamlString(v any) string {
	switch v := v.(type) {
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fmt.Sprint(x)
		}
		return strings.Join(parts, ",")
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// listValue is a comma-separated list setting.
type listValue struct {
	p    *[]string
	mode string // "", "lower", "urls" or "raw"
}

func (l listValue) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listValue) Set(v string) error {
	*l.p = nil
	for _, x := range strings.Split(v, ",") {
		x = strings.TrimSpace(x)
		if x == "" {
			continue
		}
		switch l.mode {
		case "lower":
			*l.p = append(*l.p, strings.ToLower(x))
			continue
		case "raw":
			// A key may end with "/" (base64): trimming it would be
			// another key.
			*l.p = append(*l.p, x)
			continue
		case "urls":
			if !strings.HasPrefix(x, "http://") && !strings.HasPrefix(x, "https://") {
				return fmt.Errorf("%q is not an http(s) URL", x)
			}
		}
		*l.p = append(*l.p, strings.TrimRight(x, "/"))
	}
	return nil
}
