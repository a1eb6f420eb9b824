// Package recorder records live streams to fMP4 segments with an HLS
// playlist, spooled on local disk and uploaded to a storage backend (a
// local directory or an S3-compatible bucket) with retries, so a bucket
// outage or a crash loses at most the segment being assembled.
package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livegate/livegate/recorder/storage"
	"github.com/livegate/livegate/relay"
)

// Errors for the API layer.
var (
	ErrNotFound         = errors.New("recording not found")
	ErrAlreadyRecording = errors.New("stream is already being recorded")
	ErrClosed           = errors.New("recorder is closed")
)

// Params configures a Manager. Zero values take the documented defaults.
type Params struct {
	Hub     *relay.Hub
	Storage storage.Storage
	// SpoolDir holds segments until they are uploaded, and every
	// recording's manifest (default "./data/spool").
	SpoolDir string `flag:"record-spool" help:"local spool for segments not yet stored; survives crashes"`
	// SegmentDuration is the target segment length (default 4 s).
	SegmentDuration time.Duration `flag:"record-segment" help:"target recording segment length (cut on keyframes)"`
	// Rules are path patterns (path.Match syntax, e.g. "room/*") of
	// streams recorded automatically when they go live.
	Rules []string `flag:"record-rules" help:"comma-separated path patterns recorded whenever they go live (e.g. room/*)"`
	// Retention deletes recordings that ended longer ago (0: keep).
	Retention time.Duration `flag:"record-retention" help:"delete recordings older than this (0: keep)"`
	// RetentionInterval is how often retention runs (default 1 h).
	RetentionInterval time.Duration
	// UploadWorkers is the number of parallel uploads (default 2).
	UploadWorkers int
	// RetryMin and RetryMax bound the exponential backoff between upload
	// attempts (defaults 500 ms and 30 s). Attempts never stop: a file
	// stays in the spool until storage has it.
	RetryMin, RetryMax time.Duration
	// UploadTimeout bounds one upload attempt (default 2 min).
	UploadTimeout time.Duration
	// PrepareTimeout bounds the storage check at start (default 10 s).
	PrepareTimeout time.Duration
	// SpoolMaxBytes bounds the bytes waiting in the spool for upload (0:
	// unlimited). Beyond it new segments are dropped and counted like a
	// full disk, so a storage outage cannot fill the disk the gateway
	// (and its logs) run on. DefaultParams: 10 GiB.
	SpoolMaxBytes int64 `flag:"record-spool-max" help:"bytes waiting in the spool at most; beyond, new segments are dropped and counted (0: unlimited)"`
	// QueuePackets bounds the packets waiting for one recording's writer
	// (default 8192, several seconds of HD video).
	QueuePackets int
	// OnComplete, if set, is told when a recording is entirely in storage.
	// It runs with the manager's lock held: it must not block or call back.
	OnComplete func(Info)
	Logger     *slog.Logger

	// writeFile replaces os.WriteFile-like spool writes in tests (disk full).
	writeFile func(path string, data []byte) error
}

// DefaultParams are the settings livegate starts with, and those a zero
// Params field stands for, except SpoolMaxBytes (0: unlimited).
func DefaultParams() Params {
	return Params{
		SpoolDir:          "./data/spool",
		SpoolMaxBytes:     10 << 30,
		SegmentDuration:   4 * time.Second,
		RetentionInterval: time.Hour,
		UploadWorkers:     2,
		RetryMin:          500 * time.Millisecond,
		RetryMax:          30 * time.Second,
		UploadTimeout:     2 * time.Minute,
		PrepareTimeout:    10 * time.Second,
		QueuePackets:      8192,
	}
}

func (p *Params) defaults() error {
	d := DefaultParams()
	if p.Hub == nil || p.Storage == nil {
		return errors.New("recorder: Hub and Storage are required")
	}
	if p.SpoolDir == "" {
		p.SpoolDir = d.SpoolDir
	}
	if p.SegmentDuration <= 0 {
		p.SegmentDuration = d.SegmentDuration
	}
	if p.RetentionInterval <= 0 {
		p.RetentionInterval = d.RetentionInterval
	}
	if p.UploadWorkers <= 0 {
		p.UploadWorkers = d.UploadWorkers
	}
	if p.RetryMin <= 0 {
		p.RetryMin = d.RetryMin
	}
	if p.RetryMax <= 0 {
		p.RetryMax = d.RetryMax
	}
	if p.UploadTimeout <= 0 {
		p.UploadTimeout = d.UploadTimeout
	}
	if p.PrepareTimeout <= 0 {
		p.PrepareTimeout = d.PrepareTimeout
	}
	if p.QueuePackets <= 0 {
		p.QueuePackets = d.QueuePackets
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	if p.writeFile == nil {
		p.writeFile = writeFileAtomic
	}
	for _, r := range p.Rules {
		if _, err := path.Match(r, "x/y"); err != nil {
			return fmt.Errorf("recorder: rule %q: %w", r, err)
		}
	}
	return nil
}

// Manager owns the recordings: the catalog (from the spool's manifests),
// the active recordings, the uploads and retention.
type Manager struct {
	p   Params
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	events chan string // stream paths that went live, from the hub
	wake   chan struct{}
	unsub  func()

	mu       sync.Mutex
	recs     map[string]*rec
	inflight map[string]bool // recordings an upload worker is busy with
	closed   bool

	spoolErrors atomic.Uint64 // failed spool writes (disk full), for metrics
	spoolBytes  atomic.Int64  // bytes of spooled files not yet uploaded
}

// errSpoolFull refuses a spool write beyond SpoolMaxBytes.
var errSpoolFull = errors.New("spool full (setting record-spool-max)")

// reserveSpool counts n more bytes in the spool, or refuses them.
func (m *Manager) reserveSpool(n int64) error {
	if now := m.spoolBytes.Add(n); m.p.SpoolMaxBytes > 0 && now > m.p.SpoolMaxBytes {
		m.spoolBytes.Add(-n)
		return errSpoolFull
	}
	return nil
}

// spooled is the size of man's files still in the spool.
func (man *Manifest) spooled() int64 {
	var n int64
	for _, fs := range [][]FileInfo{man.Inits, man.Segments} {
		for _, f := range fs {
			if !f.Uploaded && !f.Lost {
				n += f.Size
			}
		}
	}
	return n
}

// rec is one recording in the catalog. Its manifest is guarded by the
// manager's mutex.
type rec struct {
	dir    string
	man    *Manifest
	active *recording // nil once stopped
	upErr  string     // last upload error, for the API
	// Upload backoff, shared by the workers: after a failure no worker
	// touches this recording's uploads before retryAt.
	retryAt  time.Time
	attempts int

	// Manifest writes: journal lines since the last snapshot, and the
	// order in which prepared writes go to disk (tickets handed out under
	// the manager's lock, served under wmu).
	journaled int
	wticket   uint64
	wturn     uint64
	wmu       sync.Mutex
	wcond     *sync.Cond
}

// New loads the spool (closing recordings a crash left unfinished and
// queueing their uploads) and starts the uploaders, rules and retention.
// Close stops them.
func New(p Params) (*Manager, error) {
	if err := p.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(p.SpoolDir, 0o755); err != nil {
		return nil, fmt.Errorf("recorder: spool: %w", err)
	}
	if err := prepare(p); err != nil {
		return nil, err
	}
	m := &Manager{p: p, log: p.Logger, events: make(chan string, 256), wake: make(chan struct{}, 1),
		recs: map[string]*rec{}, inflight: map[string]bool{}}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if err := m.loadSpool(); err != nil {
		m.cancel()
		return nil, err
	}
	for range p.UploadWorkers {
		m.goFunc(m.uploadLoop)
	}
	m.goFunc(m.retentionLoop)
	if len(p.Rules) > 0 {
		m.goFunc(m.ruleLoop)
		// The hub calls this with its lock held: only hand the path on.
		m.unsub = p.Hub.Subscribe(func(e relay.Event) {
			if e.Type != relay.StreamStarted || !m.matches(e.Path) {
				return
			}
			select {
			case m.events <- e.Path:
			default:
				m.log.Warn("recorder: rule events queue full; stream not recorded", "stream", e.Path)
			}
		})
		for _, s := range p.Hub.Streams() { // already live before we started
			if m.matches(s.Path()) {
				select {
				case m.events <- s.Path():
				default:
				}
			}
		}
	}
	m.kick()
	return m, nil
}

// prepare checks the storage (an S3 bucket is created when missing). A
// refusal (bucket missing and not creatable, access denied) fails the
// start with the reason; a storage that does not answer does not: the
// recorder spools meanwhile and the uploads prepare it again.
func prepare(p Params) error {
	pr, ok := p.Storage.(storage.Preparer)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.PrepareTimeout)
	defer cancel()
	err := pr.Prepare(ctx)
	if errors.Is(err, storage.ErrUnreachable) {
		p.Logger.Warn("recorder: storage unreachable at start; recordings are spooled and uploaded once it answers",
			"storage", p.Storage.String(), "err", err)
		return nil
	}
	return err
}

func (m *Manager) goFunc(f func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
}

func (m *Manager) loadSpool() error {
	entries, err := os.ReadDir(m.p.SpoolDir)
	if err != nil {
		return fmt.Errorf("recorder: spool: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(m.p.SpoolDir, e.Name())
		man, journaled, err := loadManifestJournal(dir)
		if err != nil {
			m.log.Warn("recorder: skipping spool directory", "dir", dir, "err", err)
			continue
		}
		if !man.Finished {
			// The process died while recording: everything up to the last
			// completed segment is in the spool; close the recording.
			man.Finished, man.Interrupted = true, true
			man.End = man.Start.Add(man.duration())
			if err := man.save(dir); err != nil {
				m.log.Error("recorder: cannot update manifest", "id", man.ID, "err", err)
			} else {
				journaled = 0 // the journal is folded in
			}
			m.log.Warn("recorder: recording was interrupted by a crash; keeping what was spooled",
				"id", man.ID, "stream", man.Stream, "segments", len(man.Segments))
		}
		m.recs[man.ID] = &rec{dir: dir, man: man, journaled: journaled}
		m.spoolBytes.Add(man.spooled())
	}
	return nil
}

func (m *Manager) matches(p string) bool {
	for _, r := range m.p.Rules {
		if ok, _ := path.Match(r, p); ok {
			return true
		}
	}
	return false
}

func (m *Manager) ruleLoop() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case p := <-m.events:
			if _, err := m.Start(p); err != nil && !errors.Is(err, ErrAlreadyRecording) {
				m.log.Warn("recorder: rule could not start recording", "stream", p, "err", err)
			}
		}
	}
}

// kick wakes the upload workers.
func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Close stops every recording cleanly (their last segment is written) and
// the background work. Uploads still pending resume at the next New.
func (m *Manager) Close() { m.shutdown((*recording).stop) }

// abandon stops everything without finishing recordings, as a crash
// would (tests only).
func (m *Manager) abandon() { m.shutdown((*recording).abandon) }

// shutdown ends the active recordings with end, once, and then the
// background work.
func (m *Manager) shutdown(end func(*recording)) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	var active []*recording
	for _, r := range m.recs {
		if r.active != nil {
			active = append(active, r.active)
		}
	}
	m.mu.Unlock()
	if m.unsub != nil {
		m.unsub()
	}
	for _, a := range active {
		end(a)
	}
	m.cancel()
	m.wg.Wait()
}
