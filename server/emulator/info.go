package emulator

import "net/http"

// info answers GET /: liveness and the newest API version (reference §1.1).
func (e *Emulator) info(c *call) {
	c.writeJSON(http.StatusOK, struct {
		OK      bool   `json:"ok"`
		Version string `json:"version"`
	}{OK: true, Version: Version})
}
