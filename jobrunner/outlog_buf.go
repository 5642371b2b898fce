package jobrunner

import (
	"slices"
	"sync"
	"sync/atomic"
)

// chunkBuf is the buffer a follower merges one chunk into. It is
// reference-counted so that a watcher may keep a chunk's data after its
// callback (Chunk.Retain), as a transport that writes it out later does:
// the follower then merges the next chunk into another buffer, and this one
// goes back to its pool once the last holder released it. Without a
// holder, the follower reuses its buffer chunk after chunk.
type chunkBuf struct {
	b    []byte
	refs atomic.Int32
	pool *sync.Pool // where it goes once released; nil = the garbage collector
}

// chunkPools pools chunk buffers by capacity (a sync.Pool of *chunkBuf per
// maximum chunk size in use; callers use one or two sizes). Pooled buffers
// cost nothing once the collector cleared the pool, so a burst of retained
// chunks does not stay as memory.
var chunkPools sync.Map // int -> *sync.Pool

// newChunkBuf returns an empty buffer of capacity size with one reference.
func newChunkBuf(size int) *chunkBuf {
	p, ok := chunkPools.Load(size)
	if !ok {
		p, _ = chunkPools.LoadOrStore(size, &sync.Pool{})
	}
	pool := p.(*sync.Pool)
	cb, _ := pool.Get().(*chunkBuf)
	if cb == nil {
		cb = &chunkBuf{b: make([]byte, 0, size), pool: pool}
	}
	cb.b = cb.b[:0]
	cb.refs.Store(1)
	return cb
}

// release drops one reference; the last returns the buffer to its pool.
func (cb *chunkBuf) release() {
	switch n := cb.refs.Add(-1); {
	case n == 0:
		if cb.pool != nil {
			cb.pool.Put(cb)
		}
	case n < 0:
		panic("jobrunner: chunk buffer released twice")
	}
}

// shared reports whether someone besides its owner holds the buffer.
func (cb *chunkBuf) shared() bool { return cb.refs.Load() > 1 }

// Retain returns c.Data valid after the callback c was passed to, until
// release is called (exactly once): the data itself, held in its buffer,
// or a copy for a chunk not from a follower's buffer. Without Retain, Data
// is only valid during the callback. A watcher that retains chunks must
// bound how many it holds: each holds up to the watch's maximum chunk
// size.
func (c Chunk) Retain() (data []byte, release func()) {
	if c.buf == nil {
		return slices.Clone(c.Data), func() {}
	}
	c.buf.refs.Add(1)
	var once sync.Once
	return c.Data, func() { once.Do(c.buf.release) }
}
