// Command livegate runs the live-streaming gateway.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/livegate/livegate/cmd/internal/gateway"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "token" {
		return runToken(args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "check" {
		return runCheck(args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		return runHealthcheck(args[1:], os.Getenv, os.Stderr)
	}
	s, err := load(args, os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "livegate:", err)
		return 2
	}
	log := newLogger(s.LogLevel, s.LogFormat)
	slog.SetDefault(log)
	applyGC(s.GCPercent, os.Getenv("GOGC"), log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	g, err := gateway.New(s.Gateway, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := g.Run(ctx); err != nil {
		log.Error("stopped with error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
