package rtc

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogger hands pion's log lines to slog. pion warns about single bad
// packets and connections (port scanners on the media port, a peer that
// went away), so only its errors reach the warn level.
type pionLogger struct {
	log   *slog.Logger
	scope string
}

// PionLoggerFactory makes pion loggers (ICE, TURN) that write to log.
func PionLoggerFactory(log *slog.Logger) logging.LoggerFactory { return pionFactory{log} }

type pionFactory struct{ log *slog.Logger }

func (f pionFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log, scope: scope}
}

func iceLogger(log *slog.Logger) logging.LeveledLogger { return pionLogger{log: log, scope: "ice"} }

func (l pionLogger) out(level slog.Level, msg string) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, msg, "pion", l.scope)
	}
}

func (l pionLogger) Trace(string)          {}
func (l pionLogger) Tracef(string, ...any) {}
func (l pionLogger) Debug(m string)        { l.out(slog.LevelDebug, m) }
func (l pionLogger) Debugf(f string, a ...any) {
	l.out(slog.LevelDebug, fmt.Sprintf(f, a...))
}
func (l pionLogger) Info(m string)            { l.out(slog.LevelDebug, m) }
func (l pionLogger) Infof(f string, a ...any) { l.out(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (l pionLogger) Warn(m string)            { l.out(slog.LevelDebug, m) }
func (l pionLogger) Warnf(f string, a ...any) { l.out(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (l pionLogger) Error(m string)           { l.out(slog.LevelWarn, m) }
func (l pionLogger) Errorf(f string, a ...any) {
	l.out(slog.LevelWarn, fmt.Sprintf(f, a...))
}
