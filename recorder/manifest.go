package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Status of a recording, as the API reports it.
type Status string

// Recording statuses.
const (
	StatusRecording Status = "recording" // media is being written
	StatusUploading Status = "uploading" // ended; files are still waiting for storage
	StatusComplete  Status = "complete"  // everything is in storage
	StatusFailed    Status = "failed"    // nothing usable was recorded
)

// FileInfo is one init or media segment of a recording.
type FileInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Uploaded is set once storage has the file; the spool copy is gone.
	Uploaded bool `json:"uploaded,omitempty"`
	// Lost is set when the spool copy vanished before it was uploaded.
	Lost bool `json:"lost,omitempty"`

	// Media segments only.
	Init          string  `json:"init,omitempty"`
	Start         float64 `json:"start,omitempty"`    // seconds on the recording's timeline
	Duration      float64 `json:"duration,omitempty"` // seconds
	Discontinuity bool    `json:"discontinuity,omitempty"`
}

// Manifest is what the spool keeps per recording, so that a crash loses
// at most the segment being assembled: at start-up every manifest is read
// back, unfinished recordings are closed, and missing uploads resume.
type Manifest struct {
	ID     string    `json:"id"`
	Stream string    `json:"stream"`
	Key    string    `json:"key"` // storage prefix, ending in "/"
	Start  time.Time `json:"start"`
	End    time.Time `json:"end,omitzero"`
	// Finished is set when the recording stopped (normally, or found
	// unfinished after a crash: then Interrupted is set too).
	Finished    bool       `json:"finished,omitempty"`
	Interrupted bool       `json:"interrupted,omitempty"`
	Tracks      []string   `json:"tracks,omitempty"`
	Inits       []FileInfo `json:"inits,omitempty"`
	Segments    []FileInfo `json:"segments,omitempty"`
	// PlaylistUploaded: the final VOD playlist and this manifest are in
	// storage, which makes the recording complete.
	PlaylistUploaded bool   `json:"playlistUploaded,omitempty"`
	Error            string `json:"error,omitempty"`
}

const (
	manifestName = "manifest.json"
	// journalName holds the changes since manifest.json was written, one
	// JSON line each. Rewriting the whole manifest for every segment and
	// upload wrote a long recording's manifest once per segment: bytes
	// quadratic in its length.
	journalName = "manifest.log"
	// minCompact is the journal length below which it is never folded into
	// the manifest; above it, once it is as long as the segment list, so
	// that rewriting stays linear overall.
	minCompact = 64
)

// journalOp is one change to a manifest. Applying one twice changes
// nothing more, so a crash between writing the manifest and removing the
// journal does no harm.
type journalOp struct {
	Op    string    `json:"op"` // init, seg, up, lost, error
	File  *FileInfo `json:"file,omitempty"`
	Name  string    `json:"name,omitempty"`
	Error string    `json:"error,omitempty"`
}

func (m *Manifest) apply(op journalOp) {
	switch op.Op {
	case "init", "seg":
		if op.File == nil || m.file(op.File.Name) != nil {
			return
		}
		if op.Op == "init" {
			m.Inits = append(m.Inits, *op.File)
		} else {
			m.Segments = append(m.Segments, *op.File)
		}
	case "up", "lost":
		if f := m.file(op.Name); f != nil {
			f.Uploaded = f.Uploaded || op.Op == "up"
			f.Lost = f.Lost || op.Op == "lost"
		}
	case "error":
		m.Error = op.Error
	}
}

// save writes the manifest atomically (a crash leaves the old or the new
// version, never half of one) and drops the journal it includes.
func (m *Manifest) save(dir string) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return manifestWrite{dir: dir, snapshot: b}.write()
}

// manifestWrite is a manifest change prepared under the manager's lock
// and written after it is released, so a slow disk does not stall the
// API: either a snapshot or one journal line.
type manifestWrite struct {
	dir      string
	snapshot []byte
	line     []byte
	newLog   bool // first line of a journal: its directory entry must be synced
	r        *rec // writes of one recording happen in the order they were prepared
	ticket   uint64
}

// change applies op to r's manifest (nil: none; a snapshot is written) and
// prepares writing it down. The manager's lock is held; call write, exactly
// once, after releasing it.
func (r *rec) change(op *journalOp) manifestWrite {
	if r.wcond == nil {
		r.wcond = sync.NewCond(&r.wmu)
	}
	w := manifestWrite{dir: r.dir, r: r, ticket: r.wticket}
	r.wticket++
	if op != nil {
		r.man.apply(*op)
	}
	if op == nil || r.journaled >= max(minCompact, len(r.man.Segments)) {
		w.snapshot, _ = json.Marshal(r.man) // plain data: cannot fail
		r.journaled = 0
		return w
	}
	line, _ := json.Marshal(op)
	w.line = append(line, '\n')
	w.newLog = r.journaled == 0
	r.journaled++
	return w
}

func (w manifestWrite) write() error {
	if r := w.r; r != nil {
		r.wmu.Lock()
		for r.wturn != w.ticket {
			r.wcond.Wait()
		}
		defer func() {
			r.wturn++
			r.wcond.Broadcast()
			r.wmu.Unlock()
		}()
	}
	if w.snapshot != nil {
		if err := writeFileAtomic(filepath.Join(w.dir, manifestName), w.snapshot); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(w.dir, journalName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	f, err := os.OpenFile(filepath.Join(w.dir, journalName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(w.line); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if w.newLog {
		return syncDir(w.dir)
	}
	return nil
}

func loadManifest(dir string) (*Manifest, error) {
	m, _, err := loadManifestJournal(dir)
	return m, err
}

// loadManifestJournal reads the manifest and applies its journal; n is the
// number of journal lines applied. A torn last line (a crash while it was
// written) ends the journal.
func loadManifestJournal(dir string) (*Manifest, int, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, 0, fmt.Errorf("manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, 0, fmt.Errorf("manifest %s: %w", dir, err)
	}
	if m.ID == "" || m.ID != filepath.Base(dir) {
		return nil, 0, errors.New("manifest " + dir + ": id does not match its directory")
	}
	j, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("manifest journal: %w", err)
	}
	n := 0
	for _, l := range bytes.Split(j, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var op journalOp
		if json.Unmarshal(l, &op) != nil {
			break
		}
		m.apply(op)
		n++
	}
	return &m, n, nil
}

// syncDir makes a rename or a new file in dir durable: without it, a
// crash may forget the directory entry although the data was synced.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// writeFileAtomic writes to a temporary name, syncs and renames, so a
// reader (or a restart) never sees a partial file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		_ = os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// duration is the recorded media time.
func (m *Manifest) duration() time.Duration {
	if len(m.Segments) == 0 {
		return 0
	}
	last := m.Segments[len(m.Segments)-1]
	return time.Duration((last.Start + last.Duration) * float64(time.Second))
}

func (m *Manifest) size() int64 {
	var n int64
	for _, f := range m.Inits {
		n += f.Size
	}
	for _, f := range m.Segments {
		n += f.Size
	}
	return n
}

// pending returns the next file waiting for upload ("" if none).
func (m *Manifest) pending() string {
	for _, f := range m.Inits {
		if !f.Uploaded && !f.Lost {
			return f.Name
		}
	}
	for _, f := range m.Segments {
		if !f.Uploaded && !f.Lost {
			return f.Name
		}
	}
	return ""
}

func (m *Manifest) file(name string) *FileInfo {
	for i := range m.Inits {
		if m.Inits[i].Name == name {
			return &m.Inits[i]
		}
	}
	for i := range m.Segments {
		if m.Segments[i].Name == name {
			return &m.Segments[i]
		}
	}
	return nil
}
