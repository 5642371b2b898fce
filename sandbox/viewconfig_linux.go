package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// The parent's half of view.go: Config's view settings checked once in New,
// and the per-job part (the job's cgroup) added by Start.

// ownDirs are the directories whose whole content is the job's own in its
// view (private mounts, or a fresh /proc, /sys, /dev): host paths under them
// are hidden already.
func ownDirs() []string {
	return []string{"/tmp", "/var/tmp", "/run", "/dev", "/proc", "/sys", "/home"}
}

// writableDirs are where the shim can create a bind's mount point.
func writableDirs() []string { return []string{"/tmp", "/var/tmp", "/run", jobHome} }

// under reports whether p is one of dirs or below one.
func under(p string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool {
		return p == d || strings.HasPrefix(p, d+"/")
	})
}

// absClean checks that p is an absolute path and returns it cleaned.
func absClean(what, p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%s %q: not an absolute path", what, p)
	}
	return filepath.Clean(p), nil
}

// baseView checks Config's view settings and returns the part of every
// job's view they fix.
func (cfg Config) baseView() (view, error) {
	v := view{TmpfsSize: cfg.TmpfsSize}
	if v.TmpfsSize == 0 {
		v.TmpfsSize = DefaultTmpfsSize
	}
	for _, h := range cfg.Hide {
		p, err := absClean("hidden path", h)
		if err != nil {
			return view{}, err
		}
		if p == "/" {
			return view{}, errors.New("cannot hide / from jobs: keep the server's state and certificates in directories of their own")
		}
		if !under(p, ownDirs()) && !slices.Contains(v.Hide, p) {
			v.Hide = append(v.Hide, p)
		}
	}
	for _, b := range cfg.Binds {
		host, err := absClean("bind", b.Host)
		if err != nil {
			return view{}, err
		}
		job, err := absClean("bind", b.Job)
		if err != nil {
			return view{}, err
		}
		if _, err := os.Stat(host); err != nil {
			return view{}, fmt.Errorf("bind %s: %w", b, err)
		}
		if job == "/" || under(job, []string{"/proc", "/sys", "/dev"}) {
			return view{}, fmt.Errorf("bind %s: cannot bind over / or under /proc, /sys or /dev", b)
		}
		if err := bindTargetExists("/", job); err != nil {
			return view{}, fmt.Errorf("bind %s: %w", b, err)
		}
		v.Binds = append(v.Binds, Bind{Host: host, Job: job, Writable: b.Writable})
	}
	return v, nil
}

// bindTargetExists checks that a bind's target job can exist in the view
// with root root: it exists there, or it is under a directory the shim can
// write.
func bindTargetExists(root, job string) error {
	if under(job, writableDirs()) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(root, job)); err != nil {
		return fmt.Errorf("%s must exist in the job's view (in %s), or be under %s: %w",
			job, root, strings.Join(writableDirs(), ", "), err)
	}
	return nil
}

// validImageName is what serve --image NAME=DIR accepts as NAME.
// Compiled on first use: its {0,63} compiles to a program of 64 copies
// (0.2 ms, 60 KB), which every process of the binary (a CLI command, a shim)
// paid at package init.
var validImageName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
})

// checkImages checks that each image is a directory a job can run in and
// that every bind has its target there.
func (cfg Config) checkImages() error {
	for name, dir := range cfg.Images {
		if !validImageName().MatchString(name) {
			return fmt.Errorf("image name %q: use letters, digits, '.', '_' and '-' (at most 64)", name)
		}
		d, err := absClean("image "+name, dir)
		if err != nil {
			return err
		}
		if d == "/" {
			return fmt.Errorf("image %s: / is the host's root, which jobs see without an image", name)
		}
		for _, mp := range []string{"proc", "dev", "sys"} {
			if !isDir(filepath.Join(d, mp)) {
				return fmt.Errorf("image %s: %s has no /%s directory (mkdir %s)", name, d, mp, filepath.Join(d, mp))
			}
		}
		for _, b := range cfg.Binds {
			if err := bindTargetExists(d, filepath.Clean(b.Job)); err != nil {
				return fmt.Errorf("image %s: bind %s: %w", name, b, err)
			}
		}
	}
	return nil
}

// jobView is v with the job's cgroup directories: each under the name of
// its hierarchy's mount point, or /sys/fs/cgroup itself for a cgroup2
// hierarchy (v2).
func (s *Sandbox) jobView(v view, cg Cgroup) view {
	paths := cg.Paths()
	for _, p := range paths {
		var best mountInfo
		for _, m := range s.cgroupMounts {
			if under(p, []string{m.mountPoint}) && len(m.mountPoint) > len(best.mountPoint) {
				best = m
			}
		}
		if best.mountPoint == "" {
			continue // not under a cgroup mount we know: not shown
		}
		c := viewCgroup{Host: p}
		if best.fsType == "cgroup" || len(paths) > 1 {
			c.Name = filepath.Base(best.mountPoint)
			for _, o := range best.superOpts {
				if slices.Contains(v1Controllers(), o) && o != c.Name {
					c.Links = append(c.Links, o)
				}
			}
		}
		v.Cgroups = append(v.Cgroups, c)
	}
	return v
}
