package recorder

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// uploadLoop is one upload worker. Work is found from the manifests, not
// from a queue: nothing to lose on a crash, and the catalog bounds it.
// Each worker takes one recording at a time, so a recording's files go up
// in order (the playlist last). A failed upload puts its recording on a
// backoff that every worker honours: the same file is never retried by two
// workers at once nor sooner than the backoff, and a worker meanwhile
// uploads other recordings.
func (m *Manager) uploadLoop() {
	for {
		id, name, wait, ok := m.claim()
		if !ok {
			var retry <-chan time.Time
			var timer *time.Timer
			if wait > 0 {
				timer = time.NewTimer(wait)
				retry = timer.C
			}
			select {
			case <-m.ctx.Done():
			case <-m.wake:
			case <-retry:
			}
			if timer != nil {
				timer.Stop()
			}
			if m.ctx.Err() != nil {
				return
			}
			continue
		}
		err := m.uploadOne(id, name)
		if err != nil && m.ctx.Err() != nil {
			m.release(id)
			return
		}
		m.done(id, name, err)
	}
}

// claim picks the oldest recording with something to upload that no
// other worker holds and whose backoff has passed. name is "" when the
// playlist is due. Without work, wait is how long until a backoff ends
// (0: none pending).
func (m *Manager) claim() (id, name string, wait time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	var ids []string
	for rid, r := range m.recs {
		if m.inflight[rid] {
			continue
		}
		if r.man.pending() == "" && (!r.man.Finished || r.active != nil || r.man.PlaylistUploaded || len(r.man.Segments) == 0) {
			continue
		}
		if d := r.retryAt.Sub(now); d > 0 {
			if wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		ids = append(ids, rid)
	}
	if len(ids) == 0 {
		return "", "", wait, false
	}
	// Recordings whose uploads go well first, oldest first (IDs begin with
	// the start time): one whose uploads keep failing (refused, or hanging
	// until UploadTimeout) must not hold the workers while others could
	// be uploaded.
	sort.Slice(ids, func(i, j int) bool {
		fi, fj := m.recs[ids[i]].attempts > 0, m.recs[ids[j]].attempts > 0
		if fi != fj {
			return fj
		}
		return ids[i] < ids[j]
	})
	id = ids[0]
	m.inflight[id] = true
	return id, m.recs[id].man.pending(), 0, true
}

// done releases a recording after an upload attempt. A failure sets its
// backoff (exponential with jitter, capped: the bucket may be down for
// minutes, and many recordings must not retry in lockstep).
func (m *Manager) done(id, name string, err error) {
	m.mu.Lock()
	delete(m.inflight, id)
	r := m.recs[id]
	if r == nil {
		m.mu.Unlock()
		m.kick()
		return
	}
	if err == nil {
		r.attempts, r.retryAt = 0, time.Time{}
		m.mu.Unlock()
		m.kick() // the next file may go to another idle worker
		return
	}
	d := m.p.RetryMin << min(r.attempts, 16)
	if d > m.p.RetryMax || d <= 0 {
		d = m.p.RetryMax
	}
	d = d/2 + rand.N(d/2+1)
	r.attempts++
	r.retryAt = time.Now().Add(d)
	attempt := r.attempts
	m.mu.Unlock()
	if name == "" {
		name = "index.m3u8"
	}
	m.log.Warn("recorder: upload failed; retrying", "id", id, "file", name, "in", d.Round(time.Millisecond),
		"attempt", attempt, "err", err)
	m.kick() // another worker may take other recordings meanwhile
}

func (m *Manager) release(id string) {
	m.mu.Lock()
	delete(m.inflight, id)
	m.mu.Unlock()
}

// uploadOne uploads one file (or, with name "", the final playlist and
// manifest) and records the result in the manifest.
func (m *Manager) uploadOne(id, name string) error {
	m.mu.Lock()
	r := m.recs[id]
	if r == nil {
		m.mu.Unlock()
		return nil // deleted meanwhile
	}
	key, dir := r.man.Key, r.dir
	var playlist []byte
	var snap manifestWrite
	if name == "" {
		playlist = playlistBytes(r.man)
		snap = r.change(nil) // the manifest that goes to storage is whole
	}
	m.mu.Unlock()

	ctx, cancel := context.WithTimeout(m.ctx, m.p.UploadTimeout)
	defer cancel()
	var err error
	if name == "" {
		if err = snap.write(); err == nil {
			err = m.uploadFinal(ctx, r, key, dir, playlist)
		}
	} else {
		err = m.p.Storage.PutFile(ctx, key+name, filepath.Join(dir, name))
	}

	m.mu.Lock()
	if err != nil {
		if name != "" && errors.Is(err, fs.ErrNotExist) {
			// The spool copy is gone (deleted by hand?): nothing to retry.
			if f := r.man.file(name); f != nil && !f.Lost {
				m.spoolBytes.Add(-f.Size)
			}
			w := r.change(&journalOp{Op: "lost", Name: name})
			m.mu.Unlock()
			m.log.Error("recorder: spooled file missing; it is lost", "id", id, "file", name)
			_ = w.write()
			return nil
		}
		r.upErr = time.Now().UTC().Format(time.RFC3339) + ": upload: " + err.Error()
		m.mu.Unlock()
		return err
	}
	r.upErr = ""
	var w manifestWrite
	var size int64
	if name == "" {
		r.man.PlaylistUploaded = true
		w = r.change(nil)
		m.log.Info("recording complete in storage", "id", id, "storage", m.p.Storage.String())
		if f := m.p.OnComplete; f != nil {
			f(m.infoLocked(r))
		}
	} else {
		if f := r.man.file(name); f != nil && !f.Uploaded {
			size = f.Size
		}
		w = r.change(&journalOp{Op: "up", Name: name})
	}
	m.mu.Unlock()
	if err := w.write(); err != nil {
		// The spool copy stays: after a restart the manifest still says
		// "not uploaded", and a copy that is gone would count as lost.
		m.log.Error("recorder: cannot save manifest; keeping the spooled file", "id", id, "file", name, "err", err)
		return nil
	}
	if name != "" {
		// Only after the manifest says "uploaded": a crash in between
		// uploads the file again instead of losing it.
		if os.Remove(filepath.Join(dir, name)) == nil {
			m.spoolBytes.Add(-size)
		}
	}
	return nil
}

// uploadFinal puts the VOD playlist and the manifest into storage, next to
// the segments, so the bucket alone is a playable, self-describing archive.
func (m *Manager) uploadFinal(ctx context.Context, r *rec, key, dir string, playlist []byte) error {
	pl := filepath.Join(dir, "index.m3u8")
	if err := writeFileAtomic(pl, playlist); err != nil {
		return err
	}
	if err := m.p.Storage.PutFile(ctx, key+"index.m3u8", pl); err != nil {
		return err
	}
	return m.p.Storage.PutFile(ctx, key+manifestName, filepath.Join(dir, manifestName))
}
