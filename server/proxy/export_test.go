package proxy

// SpoolFiles reports how many spool files the proxy has created, so that tests can tell
// that an upload took the disk path.
func (p *Proxy) SpoolFiles() int64 { return p.spoolFiles.Load() }

// SpoolInUse reports the bytes uploads in flight hold, so that tests can tell that every
// path released its share.
func (p *Proxy) SpoolInUse() int64 { return p.spools.inUse() }
