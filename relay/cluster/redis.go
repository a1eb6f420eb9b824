package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisOptions configures a Redis directory.
type RedisOptions struct {
	// Prefix namespaces the keys (default "livegate:"), so that several
	// clusters can share one Redis.
	Prefix string
	// Timeout bounds dialing and each read and write (default 1 s), so an
	// unreachable Redis costs a caller at most about that long.
	Timeout time.Duration
}

// Redis is a Directory shared by all nodes through one Redis server.
//
// Keys (with the prefix):
//
//	node:<id>      JSON of the Node, expires after the TTL
//	members        sorted set of node ids by expiry (Unix ms), for listing
//	room           sorted set of the ids of edges with room for a viewer,
//	               by utilization: the least loaded is the first
//	stream:<path>  id of the node where path originates, expires after the TTL
//
// A heartbeat is one round trip of O(log n) work for the node (two
// sorted-set updates) plus its own streams; nobody reads the whole node
// list except GET /api/v1/cluster. Finding the least loaded edges with room
// reads the first few entries of room (O(log n)), skipping and removing
// entries whose node expired.
//
// Redis may be restarted empty: every heartbeat writes the node and all of
// its streams again, so the directory is whole one heartbeat later.
type Redis struct {
	c      *redis.Client
	prefix string
}

// removeIfOwner deletes KEYS[1] only if it still names node ARGV[1].
var removeIfOwner = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// refreshIfOwner extends, for node ARGV[1], the life (ARGV[2] ms) of each
// stream key that names it or names nobody. A stream that another node
// took over (its publisher moved there) is left alone: the old node,
// still waiting out its grace period, must not claim it back.
var refreshIfOwner = redis.NewScript(`
for _, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if v == false or v == ARGV[1] then
    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
  end
end
return 0`)

// NewRedis connects lazily to the Redis at rawURL
// (redis://[user:password@]host:port[/db], or rediss:// for TLS). A Redis
// that is down now is not an error: the directory recovers when it is up.
func NewRedis(rawURL string, o RedisOptions) (*Redis, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("cluster-redis: %w", err)
	}
	if o.Prefix == "" {
		o.Prefix = "livegate:"
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1 // a failed call is retried by the next heartbeat, not inline
	opt.Protocol = 2
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	opt.PoolSize = 8
	opt.DialerRetries, opt.DialerRetryTimeout = 1, 50*time.Millisecond
	quietLibrary.Do(func() { redis.SetLogger(debugLogger{}) })
	return &Redis{c: redis.NewClient(opt), prefix: o.Prefix}, nil
}

// quietLibrary sends go-redis's own log lines (one per failed dial while
// Redis is down) to debug level: the Member logs outages, rate-limited.
// The setting is process-wide; livegate has no other go-redis client.
var quietLibrary sync.Once

type debugLogger struct{}

func (debugLogger) Printf(ctx context.Context, format string, v ...any) {
	slog.Default().DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
}

// Kind implements Directory.
func (r *Redis) Kind() string { return "redis" }

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }

func (r *Redis) nodeKey(id string) string     { return r.prefix + "node:" + id }
func (r *Redis) streamKey(path string) string { return r.prefix + "stream:" + path }
func (r *Redis) membersKey() string           { return r.prefix + "members" }
func (r *Redis) roomKey() string              { return r.prefix + "room" }

// Heartbeat implements Directory: one round trip.
func (r *Redis) Heartbeat(ctx context.Context, n Node, streams []string, ttl time.Duration) error {
	n.Updated = time.Now().UTC()
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.nodeKey(n.ID), b, ttl)
		p.ZAdd(ctx, r.membersKey(), redis.Z{Score: float64(n.Updated.Add(ttl).UnixMilli()), Member: n.ID})
		if u, ok := room(n); ok {
			p.ZAdd(ctx, r.roomKey(), redis.Z{Score: u, Member: n.ID})
		} else {
			p.ZRem(ctx, r.roomKey(), n.ID)
		}
		if len(streams) > 0 {
			keys := make([]string, len(streams))
			for i, s := range streams {
				keys[i] = r.streamKey(s)
			}
			// EVAL, not EVALSHA: the script cache is empty after a restart.
			refreshIfOwner.Eval(ctx, p, keys, n.ID, ttl.Milliseconds())
		}
		return nil
	})
	return err
}

// AddStream implements Directory: path now originates on id, whoever had
// it before (a publisher that moved here is authoritative).
func (r *Redis) AddStream(ctx context.Context, id, path string, ttl time.Duration) error {
	return r.c.Set(ctx, r.streamKey(path), id, ttl).Err()
}

// RemoveStream implements Directory.
func (r *Redis) RemoveStream(ctx context.Context, id, path string) error {
	return removeIfOwner.Run(ctx, r.c, []string{r.streamKey(path)}, id).Err()
}

// Leave implements Directory.
func (r *Redis) Leave(ctx context.Context, id string, streams []string) error {
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.nodeKey(id))
		p.ZRem(ctx, r.membersKey(), id)
		p.ZRem(ctx, r.roomKey(), id)
		for _, s := range streams {
			removeIfOwner.Eval(ctx, p, []string{r.streamKey(s)}, id) // EVALSHA could meet a restarted Redis
		}
		return nil
	})
	return err
}

// nodes reads the entries of ids; ids whose entry expired are returned
// apart.
func (r *Redis) nodes(ctx context.Context, ids []string) (live []Node, dead []any, err error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.nodeKey(id)
	}
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, nil, err
	}
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			dead = append(dead, ids[i])
			continue
		}
		var n Node
		if json.Unmarshal([]byte(s), &n) == nil {
			live = append(live, n)
		}
	}
	return live, dead, nil
}

// Nodes implements Directory: the whole list (O(n)), for the API only.
// Entries of dead nodes are pruned on the way.
func (r *Redis) Nodes(ctx context.Context) ([]Node, error) {
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	var rng *redis.StringSliceCmd
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, r.membersKey(), "-inf", "("+now)
		rng = p.ZRange(ctx, r.membersKey(), 0, -1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	ids := rng.Val()
	out, dead, err := r.nodes(ctx, ids)
	if err != nil {
		return nil, err
	}
	if len(dead) > 0 {
		// A node that comes back re-adds itself with its next heartbeat.
		_, _ = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ZRem(ctx, r.membersKey(), dead...)
			p.ZRem(ctx, r.roomKey(), dead...)
			return nil
		})
	}
	if out == nil {
		out = []Node{}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Candidates implements Directory: the first k entries of the room set
// (O(log n + k)), without the nodes that died meanwhile.
func (r *Redis) Candidates(ctx context.Context, k int) ([]Node, error) {
	if k <= 0 {
		return nil, nil
	}
	for range 3 { // dead entries at the head are removed, then read again
		ids, err := r.c.ZRange(ctx, r.roomKey(), 0, int64(k-1)).Result()
		if err != nil {
			return nil, err
		}
		live, dead, err := r.nodes(ctx, ids)
		if err != nil {
			return nil, err
		}
		if len(dead) == 0 || len(ids) < k {
			if len(dead) > 0 {
				_ = r.c.ZRem(ctx, r.roomKey(), dead...).Err()
			}
			return byRoom(live), nil
		}
		if err := r.c.ZRem(ctx, r.roomKey(), dead...).Err(); err != nil {
			return nil, err
		}
	}
	ids, err := r.c.ZRange(ctx, r.roomKey(), 0, int64(k-1)).Result()
	if err != nil {
		return nil, err
	}
	live, _, err := r.nodes(ctx, ids)
	return byRoom(live), err
}

// Locate implements Directory: the stream's node, if that node is alive.
func (r *Redis) Locate(ctx context.Context, path string) (Node, bool, error) {
	id, err := r.c.Get(ctx, r.streamKey(path)).Result()
	if errors.Is(err, redis.Nil) {
		return Node{}, false, nil
	}
	if err != nil {
		return Node{}, false, err
	}
	b, err := r.c.Get(ctx, r.nodeKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Node{}, false, nil // its node is dead
	}
	if err != nil {
		return Node{}, false, err
	}
	var n Node
	if err := json.Unmarshal(b, &n); err != nil {
		return Node{}, false, fmt.Errorf("node %s: %w", id, err)
	}
	return n, true, nil
}

// Close implements Directory.
func (r *Redis) Close() error { return r.c.Close() }
