package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/livegate/livegate/web/auth"
)

// runToken implements `livegate token`: it prints a signed access token.
// The key comes from --auth-key, else the --config file's auth-key, else
// LIVEGATE_AUTH_KEY, as for the server.
func runToken(args []string, env func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("livegate token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	room := fs.String("room", "", "room the token is for")
	identity := fs.String("identity", "", "who holds it (a host publishes ROOM/IDENTITY and ROOM/IDENTITY-screen)")
	name := fs.String("name", "", "display name")
	grants := fs.String("grant", "subscribe", "comma-separated grants: publish, subscribe, chat, admin")
	ttl := fs.Duration("ttl", time.Hour, "validity")
	key := fs.String("auth-key", "", "signing key (default: --config file, then LIVEGATE_AUTH_KEY)")
	cfg := fs.String("config", "", "YAML settings file to read auth-key from")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: livegate token --room R --identity I --grant publish,subscribe --ttl 1h")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	k, err := tokenKey(*key, *cfg, env)
	if err != nil {
		fmt.Fprintln(stderr, "livegate token:", err)
		return 2
	}
	var gs []string
	for _, g := range strings.Split(*grants, ",") {
		if g = strings.TrimSpace(g); g != "" {
			gs = append(gs, g)
		}
	}
	tok, err := auth.Mint([]byte(k), auth.Request{Room: *room, Identity: *identity, Name: *name, Grants: gs, TTL: *ttl}, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "livegate token:", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

func tokenKey(flagKey, cfgFile string, env func(string) string) (string, error) {
	if flagKey != "" {
		return flagKey, nil
	}
	if cfgFile == "" {
		cfgFile = env(envName("config"))
	}
	if cfgFile != "" {
		b, err := os.ReadFile(cfgFile)
		if err != nil {
			return "", fmt.Errorf("config: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			return "", fmt.Errorf("config %s: %w", cfgFile, err)
		}
		if k, ok := m["auth-key"].(string); ok && k != "" {
			return k, nil
		}
	}
	if k := env(envName("auth-key")); k != "" {
		return k, nil
	}
	return "", errors.New("no signing key: pass --auth-key, set auth-key in --config, or LIVEGATE_AUTH_KEY")
}
