package jobrunner

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// tenantByte is byte k of tenant i's output: every log of this test says
// whose it is at every offset, so that a byte of one tenant's output in
// another's chunk is seen.
func tenantByte(i int, k int64) byte { return byte((int64(i)*97 + k*31 + k/251) % 251) }

// TestRetainedChunksAcrossTenants attacks the pooled chunk buffers as
// tenants' watchers would: several jobs' logs are written and followed at
// once, each watcher retaining its chunks and releasing them later, from
// another goroutine, after a random delay (a transport writing them out),
// and some watchers ending early (a client cancelling) while their
// chunks are still held. A chunk buffer handed back to its pool while
// still held would be refilled with another tenant's output: every
// retained chunk is checked when it is handed over and again just before
// it is released.
func TestRetainedChunksAcrossTenants(t *testing.T) {
	const tenants = 4
	const perLog = 6 << 20
	logs := make([]*OutputLog, tenants)
	for i := range logs {
		logs[i] = newTestLog(t, 0)
	}

	type held struct {
		tenant  int
		offset  int64
		data    []byte
		release func()
	}
	check := func(h held, when string) {
		for j, b := range h.data {
			if want := tenantByte(h.tenant, h.offset+int64(j)); b != want {
				t.Errorf("tenant %d: byte at offset %d is %d, want %d (%s)", h.tenant, h.offset+int64(j), b, want, when)
				return
			}
		}
	}

	// The "transport": releases retained chunks after a random delay,
	// checking them first.
	transport := make(chan held, 256)
	var tw sync.WaitGroup
	for g := range 4 {
		tw.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for h := range transport {
				if r.IntN(4) == 0 {
					time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
				}
				check(h, "before release")
				h.release()
			}
		})
	}

	var watchers sync.WaitGroup
	for i, l := range logs {
		for w := range 3 {
			watchers.Go(func() {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				// Watcher 0 of each tenant cancels part way, holding chunks.
				stopAt := int64(-1)
				if w == 0 {
					stopAt = perLog / int64(2+i)
				}
				got := int64(0)
				err := l.WatchChunks(ctx, 0, []int{1000, 8 << 10, 32<<10 - 64}[w], func(c Chunk) error {
					if c.Dropped > 0 {
						t.Errorf("tenant %d: unexpected gap", i)
						return nil
					}
					data, release := c.Retain()
					h := held{tenant: i, offset: c.Offset, data: data, release: release}
					check(h, "handed over")
					transport <- h
					got += int64(len(c.Data))
					if stopAt >= 0 && got >= stopAt {
						cancel()
					}
					return nil
				})
				if err != nil && ctx.Err() == nil {
					t.Errorf("tenant %d watcher %d: %v", i, w, err)
				}
			})
		}
	}

	// The jobs write at once, in writes of many sizes.
	var writers sync.WaitGroup
	for i, l := range logs {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 99))
			for off := int64(0); off < perLog; {
				n := min(int64(1+r.IntN(70<<10)), perLog-off)
				p := make([]byte, n)
				for j := range p {
					p[j] = tenantByte(i, off+int64(j))
				}
				if err := l.Write(Stdout, p); err != nil {
					t.Error(err)
					return
				}
				off += n
			}
			if err := l.Finish(); err != nil {
				t.Error(err)
			}
		})
	}
	writers.Wait()
	watchers.Wait()
	close(transport)
	tw.Wait()
}
