package server

import (
	"fmt"
	"slices"
	"strings"

	"github.com/drrev/telehandler/jobrunner"
)

// namePrefix is the collection of job resource names (AIP-122): "jobs/{id}".
const namePrefix = "jobs/"

// maxIDLen bounds a job id; ids the runner makes are far shorter.
const maxIDLen = 128

// jobName is the resource name of the job with the given id.
func jobName(id string) string { return namePrefix + id }

// jobRef is a parsed reference to a job: what a request's name field may
// hold.
type jobRef struct {
	// s is the reference without "jobs/".
	s string
	// idOnly: the reference was "jobs/...": an id or an id prefix, never a
	// job's display name.
	idOnly bool
}

// parseJobRef checks a request's reference to a job: "jobs/{id}", a bare
// id, a job's display name, or a prefix of an id (with or without "jobs/").
// It is 1 to maxIDLen of [A-Za-z0-9_.-] after the optional "jobs/";
// anything else is an invalid argument.
func parseJobRef(name string) (jobRef, error) {
	s, idOnly := strings.CutPrefix(name, namePrefix)
	if s == "" || len(s) > maxIDLen {
		return jobRef{}, errorf(errInvalidArgument, "job %q is not a job name, id, id prefix or jobs/{id}", clip(name))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return jobRef{}, errorf(errInvalidArgument, "job %q is not a job name, id, id prefix or jobs/{id}: they only hold letters, digits, '.', '-' and '_'", clip(name))
		}
	}
	return jobRef{s: s, idOnly: idOnly}, nil
}

// maxAmbiguous is how many matches an ambiguous reference's error lists.
const maxAmbiguous = 5

// resolveJob returns the id of the one job, among those who may see, that
// ref names (name is the reference as the client wrote it, for messages).
// In this order:
//
//  1. the job whose id is ref;
//  2. (unless ref was "jobs/...") the job with display name ref: the
//     caller's own first, since names are unique per owner; failing that
//     (an admin naming another user's job) the one visible job of that
//     name;
//  3. the one job whose id starts with ref.
//
// Jobs the caller may not see take no part, so an error never reveals
// them: no match is "not found", several are an error that lists them.
func resolveJob(refs []jobrunner.Ref, who Identity, name string, ref jobRef) (string, error) {
	var named, prefixed []jobrunner.Ref
	for _, r := range refs {
		if !who.canSee(r.Owner) {
			continue
		}
		if r.ID == ref.s {
			return r.ID, nil
		}
		if !ref.idOnly && r.Name == ref.s {
			if r.Owner == who.Name {
				named = append([]jobrunner.Ref{r}, named...)
			} else {
				named = append(named, r)
			}
		}
		if strings.HasPrefix(r.ID, ref.s) {
			prefixed = append(prefixed, r)
		}
	}
	switch {
	case len(named) == 1 || len(named) > 1 && named[0].Owner == who.Name:
		return named[0].ID, nil
	case len(named) > 1:
		return "", ambiguous(name, "name", named)
	case len(prefixed) == 1:
		return prefixed[0].ID, nil
	case len(prefixed) > 1:
		return "", ambiguous(name, "id prefix", prefixed)
	}
	return "", jobErr(name, jobrunner.ErrJobNotFound)
}

// ambiguous is the error for a reference that matches several jobs.
func ambiguous(name, what string, matches []jobrunner.Ref) error {
	slices.SortFunc(matches, func(a, b jobrunner.Ref) int { return strings.Compare(a.ID, b.ID) })
	var list []string
	for i, m := range matches {
		if i == maxAmbiguous {
			list = append(list, fmt.Sprintf("and %d more", len(matches)-maxAmbiguous))
			break
		}
		desc := jobName(m.ID)
		if m.Name != "" {
			desc += " (" + m.Owner + "/" + m.Name + ")"
		}
		list = append(list, desc)
	}
	return errorf(errInvalidArgument, "job %q is ambiguous: the %s matches %d jobs: %s; give more of the id",
		clip(name), what, len(matches), strings.Join(list, ", "))
}

// clip shortens s for an error message so a huge input is not echoed back.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
