package triggerer

import "sync"

// batcher groups work that arrives close together. Callers add items; up to
// maxInFlight flush loops (goroutines started on demand, ending when the queue is
// empty) each take whatever is queued, at most maxBatch items, and flush them
// together. There is no timer: the first item is flushed at once, and items that
// arrive while a flush runs wait only for the next one — under load batches grow
// by themselves, when idle an item waits for nothing. (River's completer ticks
// every 50 ms instead; a worker here waits for its own flush, so waiting for a
// tick would add latency without saving work.) flush must resolve every item it
// is given.
type batcher[T any] struct {
	maxBatch    int
	maxInFlight int
	flush       func(items []T)

	mu      sync.Mutex
	queue   []T
	running int
}

func newBatcher[T any](maxBatch, maxInFlight int, flush func([]T)) *batcher[T] {
	return &batcher[T]{maxBatch: maxBatch, maxInFlight: maxInFlight, flush: flush}
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
