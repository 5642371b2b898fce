package main

import "github.com/drrev/telehandler/sandbox"

// childMain is the hidden __child role: the namespace shim. It never returns.
func childMain() {
	sandbox.RunChild()
}
