//go:build race

package server

// raceEnabled: the race detector slows everything down several times over;
// timing assertions do not hold under it.
const raceEnabled = true
