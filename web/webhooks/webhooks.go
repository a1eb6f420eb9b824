// Package webhooks tells other systems what happened: stream started and
// ended, room opened and closed, recording finished, egress failed. Each
// delivery is a signed JSON POST, retried with backoff; a slow or dead
// endpoint delays only its own queue and never the media path.
package webhooks

import (
	"bytes"
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Event types.
const (
	StreamStarted     = "stream.started"
	StreamEnded       = "stream.ended"
	RoomOpened        = "room.opened"
	RoomClosed        = "room.closed"
	RecordingFinished = "recording.finished"
	EgressFailed      = "egress.failed"
)

// Headers of every delivery. The signature is HMAC-SHA256 over
// timestamp + "." + body with the shared secret, hex encoded, so a receiver
// can reject replays of old deliveries.
const (
	HeaderSignature = "X-Livegate-Signature"
	HeaderTimestamp = "X-Livegate-Timestamp"
	HeaderEvent     = "X-Livegate-Event"
	HeaderDelivery  = "X-Livegate-Delivery"
)

// Event is one notification.
type Event struct {
	ID   string    `json:"id"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	Data any       `json:"data,omitempty"`
}

// Params configures a Notifier.
type Params struct {
	URLs   []string `flag:"webhook-urls" list:"urls" help:"comma-separated URLs notified of stream, room, recording and egress events"`
	Secret string   `flag:"webhook-secret" help:"HMAC-SHA256 key signing webhook deliveries (X-Livegate-Signature)"`
	// Queue bounds pending events per URL (default 1000); beyond it events
	// are dropped and counted.
	Queue int
	// Attempts per delivery (default 8), with exponential backoff from
	// MinBackoff (default 1 s) to MaxBackoff (default 1 min) plus jitter.
	Attempts   int
	MinBackoff time.Duration
	MaxBackoff time.Duration
	Timeout    time.Duration // per attempt (default 5 s)
	Client     *http.Client
	Logger     *slog.Logger
}

// Notifier delivers events to every configured URL.
type Notifier struct {
	p       Params
	targets []*target
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	Dropped   atomic.Uint64
	Failed    atomic.Uint64
	Delivered atomic.Uint64
	lastDrop  atomic.Int64 // unix nanoseconds of the last drop warning
}

type target struct {
	url   string
	shown string // url without credentials, for logs
	queue chan delivery
}

// Redact returns u without user info and query, which may carry
// credentials, for logs.
func Redact(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	pu.User = nil
	if pu.RawQuery != "" {
		pu.RawQuery = "REDACTED"
	}
	pu.Fragment = ""
	return pu.String()
}

type delivery struct {
	typ, id string
	body    []byte
}

// Sign computes the signature header value for a body.
func Sign(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(timestamp))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// DefaultParams are the settings a zero Params field stands for.
func DefaultParams() Params {
	return Params{Queue: 1000, Attempts: 8, MinBackoff: time.Second, MaxBackoff: time.Minute, Timeout: 5 * time.Second}
}

// New starts one delivery goroutine per URL; Close stops them.
func New(p Params) *Notifier {
	d := DefaultParams()
	if p.Queue <= 0 {
		p.Queue = d.Queue
	}
	if p.Attempts <= 0 {
		p.Attempts = d.Attempts
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = d.MinBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = d.MaxBackoff
	}
	if p.Timeout <= 0 {
		p.Timeout = d.Timeout
	}
	if p.Client == nil {
		p.Client = &http.Client{}
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{p: p, cancel: cancel}
	if len(p.URLs) > 0 && p.Secret == "" {
		p.Logger.Warn("webhooks are unsigned: set webhook-secret so receivers can tell livegate's deliveries from forgeries")
	}
	for _, u := range p.URLs {
		t := &target{url: u, shown: Redact(u), queue: make(chan delivery, p.Queue)}
		n.targets = append(n.targets, t)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.deliverLoop(ctx, t)
		}()
	}
	return n
}

// Send queues an event for every URL without blocking.
func (n *Notifier) Send(typ string, data any) {
	if n == nil || len(n.targets) == 0 {
		return
	}
	var raw [8]byte
	_, _ = cryptoRead(raw[:])
	id := hex.EncodeToString(raw[:])
	body, err := json.Marshal(Event{ID: id, Type: typ, Time: time.Now().UTC(), Data: data})
	if err != nil {
		n.p.Logger.Error("webhook event not serialisable", "type", typ, "err", err)
		return
	}
	for _, t := range n.targets {
		select {
		case t.queue <- delivery{typ: typ, id: id, body: body}:
		default:
			dropped := n.Dropped.Add(1)
			// One warning per 10 s at most: a dead endpoint must not flood the log.
			now, last := time.Now().UnixNano(), n.lastDrop.Load()
			if now-last >= int64(10*time.Second) && n.lastDrop.CompareAndSwap(last, now) {
				n.p.Logger.Warn("webhook queue full; events dropped", "url", t.shown, "type", typ, "dropped_total", dropped)
			}
		}
	}
}

// Close stops delivering; queued events are abandoned.
func (n *Notifier) Close() {
	n.cancel()
	n.wg.Wait()
}

func (n *Notifier) deliverLoop(ctx context.Context, t *target) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-t.queue:
			n.deliver(ctx, t, d)
		}
	}
}

// deliver posts one event until it is accepted (2xx), the attempts run out
// or the notifier closes. Events to one URL stay in order.
func (n *Notifier) deliver(ctx context.Context, t *target, d delivery) {
	typ := d.typ
	backoff := n.p.MinBackoff
	for attempt := 1; ; attempt++ {
		err := n.post(ctx, t.url, typ, d.id, d.body)
		if err == nil {
			n.Delivered.Add(1)
			return
		}
		if attempt >= n.p.Attempts || ctx.Err() != nil {
			n.Failed.Add(1)
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // its message repeats the URL, credentials and all
			}
			n.p.Logger.Warn("webhook delivery failed; giving up", "url", t.shown, "type", typ, "attempts", attempt, "err", err)
			return
		}
		wait := backoff + time.Duration(rand.Int64N(int64(backoff)/2+1))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, n.p.MaxBackoff)
	}
}

func (n *Notifier) post(ctx context.Context, target, typ, id string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, n.p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "livegate-webhooks")
	req.Header.Set(HeaderEvent, typ)
	req.Header.Set(HeaderDelivery, id)
	req.Header.Set(HeaderTimestamp, ts)
	if n.p.Secret != "" {
		req.Header.Set(HeaderSignature, Sign(n.p.Secret, ts, body))
	}
	resp, err := n.p.Client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

var cryptoRead = crand.Read
