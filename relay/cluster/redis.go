package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
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
//	nodes          set of node ids (dead ones are pruned when listing)
//	stream:<path>  id of the node where path originates, expires after the TTL
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
func (r *Redis) nodesKey() string             { return r.prefix + "nodes" }

// Heartbeat implements Directory: one round trip.
func (r *Redis) Heartbeat(ctx context.Context, n Node, streams []string, ttl time.Duration) error {
	n.Updated = time.Now().UTC()
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, r.nodeKey(n.ID), b, ttl)
		p.SAdd(ctx, r.nodesKey(), n.ID)
		for _, s := range streams {
			p.Set(ctx, r.streamKey(s), n.ID, ttl)
		}
		return nil
	})
	return err
}

// AddStream implements Directory.
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
		p.SRem(ctx, r.nodesKey(), id)
		for _, s := range streams {
			removeIfOwner.Eval(ctx, p, []string{r.streamKey(s)}, id) // EVALSHA could meet a restarted Redis
		}
		return nil
	})
	return err
}

// Nodes implements Directory: two round trips, and a third to prune the
// ids of nodes whose entry expired.
func (r *Redis) Nodes(ctx context.Context) ([]Node, error) {
	ids, err := r.c.SMembers(ctx, r.nodesKey()).Result()
	if err != nil || len(ids) == 0 {
		return []Node{}, err
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.nodeKey(id)
	}
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(ids))
	var dead []any
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			dead = append(dead, ids[i])
			continue
		}
		var n Node
		if json.Unmarshal([]byte(s), &n) == nil {
			out = append(out, n)
		}
	}
	if len(dead) > 0 {
		// A node that comes back re-adds itself with its next heartbeat.
		_ = r.c.SRem(ctx, r.nodesKey(), dead...).Err()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
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
