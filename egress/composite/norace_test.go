//go:build !race

package composite

const raceEnabled = false
