package triggerer

import (
	"sync"
	"time"
)

// batcher groups work that arrives close together. Callers add items; up to
// maxInFlight flush loops (goroutines started on demand, ending when the queue is
// empty) each take whatever is queued, at most maxBatch items, and flush them
// together. A new loop waits linger before its first take, so that a burst (River
// starts the polls it fetched together) becomes one group rather than a group of
// one followed by the rest; after that, items that arrive while a flush runs wait
// only for the next one, so under load groups grow by themselves. (River's
// completer ticks every 50 ms instead; a worker here waits for its own flush, so
// a tick would add latency.) flush must resolve every item it is given.
type batcher[T any] struct {
	maxBatch    int
	maxInFlight int
	linger      time.Duration
	flush       func(items []T)

	mu      sync.Mutex
	queue   []T
	running int
}

func newBatcher[T any](maxBatch, maxInFlight int, linger time.Duration, flush func([]T)) *batcher[T] {
	return &batcher[T]{maxBatch: maxBatch, maxInFlight: maxInFlight, linger: linger, flush: flush}
}

// add queues item and makes sure a flush loop will take it.
func (b *batcher[T]) add(item T) {
	b.mu.Lock()
	b.queue = append(b.queue, item)
	start := b.running < b.maxInFlight
	if start {
		b.running++
	}
	b.mu.Unlock()
	if start {
		go b.loop()
	}
}

func (b *batcher[T]) loop() {
	if b.linger > 0 {
		time.Sleep(b.linger)
	}
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		n := min(len(b.queue), b.maxBatch)
		items := make([]T, n)
		copy(items, b.queue)
		b.queue = b.queue[n:]
		if len(b.queue) == 0 {
			b.queue = nil // let the backing array go
		}
		b.mu.Unlock()
		b.flush(items)
	}
}
