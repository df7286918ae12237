package storetest

import (
	"sync/atomic"
	"time"
)

// clock is a test's time: the real time moved forward by what the test advanced
// it. Each test gets its own and hands its now to the store (newStore's second
// argument), which reads it for every decision that depends on the time; so a
// lease ends, a timeout passes or a poll falls due because the test moved the
// clock past it, not because the test waited.
//
// It runs from the real time rather than standing still: a store stamps what does
// not depend on the time (creation and run times) at its own time, and the cases
// compare those with the clock's.
type clock struct {
	ahead atomic.Int64 // nanoseconds
}

// now is the time the test's store runs at.
func (c *clock) now() time.Time {
	return time.Now().Add(time.Duration(c.ahead.Load()))
}

// advance moves the clock forward by d.
func (c *clock) advance(d time.Duration) {
	if d < 0 {
		panic("storetest: the clock only moves forward")
	}
	c.ahead.Add(int64(d))
}
