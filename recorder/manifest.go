package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

const manifestName = "manifest.json"

// save writes the manifest atomically: a crash leaves the old or the new
// version, never half of one.
func (m *Manifest) save(dir string) error {
	b, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, manifestName), b)
}

func loadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", dir, err)
	}
	if m.ID == "" || m.ID != filepath.Base(dir) {
		return nil, errors.New("manifest " + dir + ": id does not match its directory")
	}
	return &m, nil
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
	return os.Rename(tmp, path)
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
