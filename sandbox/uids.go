package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// uidPool hands out the uids of a UIDRange, one per running job. It hands
// them out round-robin, so that a uid a job just gave back is the last to be
// reused. Safe for concurrent use.
type uidPool struct {
	r UIDRange

	mu   sync.Mutex
	next uint32          // offset in r of the next uid to try (guarded by mu)
	used map[uint32]bool // uids held by jobs (guarded by mu)
}

func newUIDPool(r UIDRange) *uidPool {
	return &uidPool{r: r, used: make(map[uint32]bool)}
}

// allocate returns a uid no running job has, or an error wrapping
// ErrNoUID when every uid of the range is taken.
func (p *uidPool) allocate() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range p.r.Count {
		uid := p.r.First + p.next
		p.next = (p.next + 1) % p.r.Count
		if !p.used[uid] {
			p.used[uid] = true
			return uid, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d uids of %s are in use by running jobs (widen --uid-range)", ErrNoUID, p.r.Count, p.r)
}

// release gives uid back.
func (p *uidPool) release(uid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, uid)
}

// validate checks that r is usable and that no user or group of the host
// (/etc/passwd, /etc/group) and no subordinate id range (/etc/subuid,
// /etc/subgid) falls in it: a job must never share a uid with anyone else.
// files are those four paths; missing files are skipped.
func (r UIDRange) validate(files ...string) error {
	if r.Count == 0 || r.First == 0 || uint64(r.First)+uint64(r.Count) > 1<<32-1 {
		return fmt.Errorf("uid range %d+%d: want FIRST-LAST with 0 < FIRST <= LAST < 4294967295", r.First, r.Count)
	}
	for _, f := range files {
		if err := r.checkFile(f); err != nil {
			return err
		}
	}
	return nil
}

// checkFile fails if an id in f falls in r. f is /etc/passwd or /etc/group
// (NAME:x:ID:...) or /etc/subuid or /etc/subgid (NAME:FIRST:COUNT).
func (r UIDRange) checkFile(f string) error {
	file, err := os.Open(f)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer file.Close()
	sub := strings.HasPrefix(f[strings.LastIndexByte(f, '/')+1:], "sub")
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		var first, count uint64 = 0, 1
		switch {
		case sub && len(fields) == 3:
			first, err = strconv.ParseUint(fields[1], 10, 32)
			if err == nil {
				count, err = strconv.ParseUint(fields[2], 10, 32)
			}
		case !sub && len(fields) >= 3:
			first, err = strconv.ParseUint(fields[2], 10, 32)
		default:
			continue
		}
		if err != nil || count == 0 {
			continue
		}
		if first <= uint64(r.Last()) && first+count-1 >= uint64(r.First) {
			return fmt.Errorf("uid range %s overlaps %q in %s: choose a range of ids nobody else uses", r, sc.Text(), f)
		}
	}
	return sc.Err()
}
