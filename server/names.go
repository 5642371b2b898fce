package server

import "strings"

// namePrefix is the collection of job resource names (AIP-122): "jobs/{id}".
const namePrefix = "jobs/"

// maxIDLen bounds a job id; ids the runner makes are far shorter.
const maxIDLen = 128

// jobName is the resource name of the job with the given id.
func jobName(id string) string { return namePrefix + id }

// parseJobName returns the id of a "jobs/{id}" resource name. The id is one
// or more of [A-Za-z0-9_-]; anything else is an invalid name.
func parseJobName(name string) (string, error) {
	id, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return "", errorf(errInvalidArgument, "job name %q does not have the form jobs/{id}", clip(name))
	}
	if id == "" || len(id) > maxIDLen {
		return "", errorf(errInvalidArgument, "job name %q does not have the form jobs/{id}", clip(name))
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", errorf(errInvalidArgument, "job name %q does not have the form jobs/{id}: the id may only hold letters, digits, '-' and '_'", clip(name))
		}
	}
	return id, nil
}

// clip shortens s for an error message so a huge input is not echoed back.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
