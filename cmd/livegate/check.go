package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/livegate/livegate/cmd/internal/gateway"
)

// runCheck implements `livegate check [flags]`: the server's half of the
// connectivity check, with the same settings as the server (flags, YAML,
// environment). Run it next to a running gateway, or before starting one.
// Exit 0: nothing wrong found; 1: problems (lines marked FAIL); 2: bad
// settings. Browsers test their half at /check.
func runCheck(args []string, env func(string) string, stdout, stderr io.Writer) int {
	s, err := load(args, env, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "livegate check:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if gateway.Diagnose(ctx, s.Gateway, stdout) {
		fmt.Fprintln(stdout, "problems found: see the FAIL lines; browsers can test their side at http://HOST/check")
		return 1
	}
	fmt.Fprintln(stdout, "no problems found; browsers can test their side at http://HOST/check")
	return 0
}
