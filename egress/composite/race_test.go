//go:build race

package composite

// raceEnabled: the race detector slows composition several times over, so
// timing bounds are loosened.
const raceEnabled = true
