package rooms

import "time"

// Subscriber receives a room's events as Server-Sent Events frames.
type Subscriber struct {
	m    *Manager
	room *room
	c    chan []byte
	// dropped is set before c is closed when the subscriber fell behind.
	dropped bool
	closed  bool
}

// Subscribe opens a room's event stream. snapshot is the first frame to
// send (the room as it is, chat history included); the frames that follow
// come from C, which is closed when the subscriber is dropped or the
// manager closes. Close the subscriber when done.
func (m *Manager) Subscribe(roomName string) (s *Subscriber, snapshot []byte, err error) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, ErrClosed
	}
	r, err := m.room(roomName, true, now)
	if err != nil {
		return nil, nil, err
	}
	if m.p.MaxSubscribers > 0 && len(r.subs) >= m.p.MaxSubscribers {
		return nil, nil, ErrTooManySubscribers
	}
	s = &Subscriber{m: m, room: r, c: make(chan []byte, m.p.SubscriberQueue)}
	r.subs[s] = struct{}{}
	r.active = now
	return s, r.snapshotFrame(), nil
}

// C delivers event frames. It is closed when the subscriber is dropped
// (see Dropped) or the manager closes.
func (s *Subscriber) C() <-chan []byte { return s.c }

// Dropped reports whether the subscriber was dropped for falling behind.
func (s *Subscriber) Dropped() bool {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	return s.dropped
}

// Close unsubscribes. It is idempotent.
func (s *Subscriber) Close() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.closed {
		return
	}
	delete(s.room.subs, s)
	s.room.active = time.Now()
	s.end(false)
}

// end closes the channel. Caller holds Manager.mu.
func (s *Subscriber) end(dropped bool) {
	if s.closed {
		return
	}
	s.closed, s.dropped = true, dropped
	close(s.c)
}
