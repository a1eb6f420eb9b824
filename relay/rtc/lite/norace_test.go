//go:build !race

package lite

const raceEnabled = false
