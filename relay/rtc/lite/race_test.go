//go:build race

package lite

// raceEnabled: under the race detector sync.Pool drops items at random, so
// the pooled message headers of x/net's WriteBatch are allocated anew.
const raceEnabled = true
