// Package web holds the browser side that the server ships: the demo page, the ES module
// loader with its TypeScript declarations, and (in dist/, written by `make build`) the
// wasm bundle, its pre-compressed twin and the toolchain's wasm_exec.js.
package web

import "embed"

// Files is the page and everything it loads, rooted at this folder.
//
//go:embed *.html *.js *.css *.d.ts all:dist
var Files embed.FS
