package webhooks

import (
	"strings"
	"sync"

	"github.com/livegate/livegate/relay"
)

// FollowHub sends stream and room events from the relay. A room opens with
// its first stream and closes with its last. It returns the unsubscribe
// function.
func FollowHub(hub *relay.Hub, n *Notifier) func() {
	var mu sync.Mutex
	rooms := map[string]int{}
	return hub.Subscribe(func(e relay.Event) {
		room, _, _ := strings.Cut(e.Path, "/")
		switch e.Type {
		case relay.StreamStarted:
			mu.Lock()
			rooms[room]++
			first := rooms[room] == 1
			mu.Unlock()
			if first {
				n.Send(RoomOpened, map[string]string{"room": room})
			}
			n.Send(StreamStarted, map[string]string{"stream": e.Path, "room": room})
		case relay.StreamEnded:
			n.Send(StreamEnded, map[string]string{"stream": e.Path, "room": room})
			mu.Lock()
			rooms[room]--
			last := rooms[room] <= 0
			if last {
				delete(rooms, room)
			}
			mu.Unlock()
			if last {
				n.Send(RoomClosed, map[string]string{"room": room})
			}
		}
	})
}
