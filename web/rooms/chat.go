package rooms

import (
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Chat posts a message to a room: checks it, applies the sender's rate
// limit, keeps it for late joiners and sends it to every subscriber.
func (m *Manager) Chat(roomName string, from Sender, text string) (Message, error) {
	text, err := m.cleanText(text)
	if err != nil {
		return Message{}, err
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Message{}, ErrClosed
	}
	r, err := m.room(roomName, true, now)
	if err != nil {
		return Message{}, err
	}
	if wait := r.limit(from.Identity, now, m.p.ChatRate, m.p.ChatBurst); wait > 0 {
		return Message{}, &RateLimitError{RetryAfter: wait}
	}
	msg := Message{Room: roomName, Identity: from.Identity, Name: from.Name, Text: text, At: now.UTC(),
		Verified: from.Verified}
	if msg.Name == "" {
		msg.Name = msg.Identity
	}
	// The message's id is the id of its event.
	msg.ID = m.seq + 1
	if m.p.History > 0 {
		if len(r.chat) >= m.p.History {
			copy(r.chat, r.chat[len(r.chat)-m.p.History+1:])
			r.chat = r.chat[:m.p.History-1]
		}
		r.chat = append(r.chat, msg)
	}
	r.broadcast(m, EventChat, msg)
	return msg, nil
}

// cleanText trims a message and checks its size and encoding. Control
// characters other than newlines and tabs are removed.
func (m *Manager) cleanText(text string) (string, error) {
	if !utf8.ValidString(text) {
		return "", ErrInvalidText
	}
	if len(text) > m.p.MaxText {
		return "", ErrTooLong
	}
	text = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || !unicode.IsControl(r) {
			return r
		}
		return -1
	}, text)
	text = strings.TrimSpace(text)
	if text == "" {
		return "", ErrEmpty
	}
	return text, nil
}

// MaxText is the longest accepted chat message in bytes.
func (m *Manager) MaxText() int { return m.p.MaxText }

// bucket is a token bucket: tokens as of at.
type bucket struct {
	tokens float64
	at     time.Time
}

// limit takes a token from identity's bucket, or returns how long to wait
// for one. Caller holds Manager.mu.
func (r *room) limit(identity string, now time.Time, rate float64, burst int) time.Duration {
	if rate <= 0 {
		return 0
	}
	b := r.limits[identity]
	if b == nil {
		if len(r.limits) >= maxLimiters {
			r.sweepLimiters(now, rate, burst)
		}
		if len(r.limits) >= maxLimiters {
			// Thousands of identities chatting at once in one room.
			return time.Second
		}
		b = &bucket{tokens: float64(burst), at: now}
		r.limits[identity] = b
	}
	b.tokens = math.Min(float64(burst), b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / rate * float64(time.Second))
	}
	b.tokens--
	return 0
}

// sweepLimiters forgets buckets that have refilled: they would start full
// anyway. Caller holds Manager.mu.
func (r *room) sweepLimiters(now time.Time, rate float64, burst int) {
	if rate <= 0 {
		clear(r.limits)
		return
	}
	full := time.Duration(float64(burst) / rate * float64(time.Second))
	for id, b := range r.limits {
		if now.Sub(b.at) >= full {
			delete(r.limits, id)
		}
	}
}
