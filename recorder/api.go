package recorder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/livegate/livegate/recorder/storage"
)

// Info is a recording as the API shows it.
type Info struct {
	ID          string    `json:"id"`
	Stream      string    `json:"stream"`
	Status      Status    `json:"status"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end,omitzero"`
	Duration    float64   `json:"durationSeconds"`
	Size        int64     `json:"sizeBytes"`
	Segments    int       `json:"segments"`
	Pending     int       `json:"pendingUploads"`
	Tracks      []string  `json:"tracks,omitempty"`
	Interrupted bool      `json:"interrupted,omitempty"`
	// Dropped counts packets the recording could not keep up with.
	Dropped uint64 `json:"droppedPackets,omitempty"`
	// Error is the last spool (e.g. disk full) or upload error, if any.
	Error    string `json:"error,omitempty"`
	Playlist string `json:"playlist"` // relative to the gateway: /recordings/ID/index.m3u8
}

// Filter selects recordings for List. Zero fields match everything.
type Filter struct {
	Stream string
	From   time.Time // recordings that ended at or after From (or still run)
	To     time.Time // recordings that started before To
}

func (m *Manager) infoLocked(r *rec) Info {
	man := r.man
	in := Info{ID: man.ID, Stream: man.Stream, Start: man.Start, End: man.End,
		Duration: man.duration().Seconds(), Size: man.size(), Segments: len(man.Segments),
		Tracks: man.Tracks, Interrupted: man.Interrupted, Error: man.Error,
		Playlist: "/recordings/" + man.ID + "/index.m3u8"}
	for _, f := range append(append([]FileInfo(nil), man.Inits...), man.Segments...) {
		if !f.Uploaded && !f.Lost {
			in.Pending++
		}
	}
	if r.upErr != "" && in.Pending > 0 {
		in.Error = r.upErr
	}
	switch {
	case r.active != nil || !man.Finished:
		in.Status = StatusRecording
		in.Dropped = r.active.droppedCount()
	case len(man.Segments) == 0:
		in.Status = StatusFailed
	case in.Pending > 0 || !man.PlaylistUploaded:
		in.Status = StatusUploading
	default:
		in.Status = StatusComplete
	}
	return in
}

// Get returns one recording.
func (m *Manager) Get(id string) (Info, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.recs[id]
	if r == nil {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return m.infoLocked(r), nil
}

// List returns the recordings matching f, newest first.
func (m *Manager) List(f Filter) []Info {
	m.mu.Lock()
	list := make([]Info, 0, len(m.recs))
	for _, r := range m.recs {
		in := m.infoLocked(r)
		if f.Stream != "" && in.Stream != f.Stream {
			continue
		}
		if !f.From.IsZero() && !in.End.IsZero() && in.End.Before(f.From) {
			continue
		}
		if !f.To.IsZero() && !in.Start.Before(f.To) {
			continue
		}
		list = append(list, in)
	}
	m.mu.Unlock()
	sort.Slice(list, func(i, j int) bool { return list[i].Start.After(list[j].Start) })
	return list
}

// Stop ends an active recording: its last segment is written and the
// playlist becomes a VOD playlist. Stopping a stopped recording is a no-op.
func (m *Manager) Stop(id string) (Info, error) {
	m.mu.Lock()
	r := m.recs[id]
	if r == nil {
		m.mu.Unlock()
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	a := r.active
	m.mu.Unlock()
	if a != nil {
		a.stop()
	}
	return m.Get(id)
}

// Delete stops the recording if needed and removes it from storage and
// the spool.
func (m *Manager) Delete(ctx context.Context, id string) error {
	if _, err := m.Stop(id); err != nil {
		return err
	}
	m.mu.Lock()
	r := m.recs[id]
	if r == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	key, dir := r.man.Key, r.dir
	m.mu.Unlock()
	if err := m.p.Storage.DeletePrefix(ctx, key); err != nil {
		return fmt.Errorf("recorder: delete %s: %w", id, err)
	}
	m.mu.Lock()
	if m.recs[id] == r {
		delete(m.recs, id)
		m.spoolBytes.Add(-r.man.spooled())
	}
	m.mu.Unlock()
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("recorder: delete %s: %w", id, err)
	}
	m.log.Info("recording deleted", "id", id)
	return nil
}

// Open returns a file of a recording for playback: the playlist
// ("index.m3u8", generated from the manifest), an init segment or a media
// segment, read from the spool until it is uploaded and from storage after.
func (m *Manager) Open(ctx context.Context, id, name string) (io.ReadCloser, int64, string, error) {
	m.mu.Lock()
	r := m.recs[id]
	if r == nil {
		m.mu.Unlock()
		return nil, 0, "", fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if name == "index.m3u8" {
		pl := r.man.Playlist()
		m.mu.Unlock()
		return io.NopCloser(strings.NewReader(pl)), int64(len(pl)), storage.ContentType(name), nil
	}
	f := r.man.file(name)
	if f == nil || f.Lost {
		m.mu.Unlock()
		return nil, 0, "", fmt.Errorf("%w: %s/%s", ErrNotFound, id, name)
	}
	uploaded, key, local := f.Uploaded, r.man.Key+name, filepath.Join(r.dir, name)
	m.mu.Unlock()
	if !uploaded {
		if fh, err := os.Open(local); err == nil {
			st, err := fh.Stat()
			if err == nil {
				return fh, st.Size(), storage.ContentType(name), nil
			}
			fh.Close()
		}
		// Uploaded (and removed from the spool) meanwhile: read storage.
	}
	rc, size, err := m.p.Storage.Open(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, 0, "", fmt.Errorf("%w: %s/%s", ErrNotFound, id, name)
	}
	if err != nil {
		return nil, 0, "", err
	}
	return rc, size, storage.ContentType(name), nil
}

// retentionLoop deletes recordings that ended more than Retention ago.
func (m *Manager) retentionLoop() {
	if m.p.Retention <= 0 {
		return
	}
	tick := time.NewTicker(m.p.RetentionInterval)
	defer tick.Stop()
	for {
		m.applyRetention(time.Now())
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (m *Manager) applyRetention(now time.Time) {
	var old []string
	m.mu.Lock()
	for id, r := range m.recs {
		if r.active == nil && r.man.Finished && !r.man.End.IsZero() && now.Sub(r.man.End) > m.p.Retention {
			old = append(old, id)
		}
	}
	m.mu.Unlock()
	for _, id := range old {
		if err := m.Delete(m.ctx, id); err != nil {
			m.log.Warn("recorder: retention could not delete recording; will retry", "id", id, "err", err)
		} else {
			m.log.Info("recorder: retention deleted recording", "id", id)
		}
	}
}

// playlistBytes is the final playlist, uploaded next to the segments so
// that the bucket alone is a playable archive.
func playlistBytes(man *Manifest) []byte { return bytes.Clone([]byte(man.Playlist())) }

// SpoolErrors counts spool writes that failed (a full disk), for metrics.
func (m *Manager) SpoolErrors() uint64 { return m.spoolErrors.Load() }

// SpoolBytes is the size of the files waiting in the spool for upload.
func (m *Manager) SpoolBytes() int64 { return m.spoolBytes.Load() }
