package blockdev

// Hydrations returns the hydration status of every open volume that is
// still hydrating (for metrics).
func (e *Engine) Hydrations() []HydrationStatus {
	e.mu.Lock()
	vols := make([]*Volume, 0, len(e.vols))
	for _, v := range e.vols {
		vols = append(vols, v)
	}
	e.mu.Unlock()
	var out []HydrationStatus
	for _, v := range vols {
		if h := v.Hydration(); h.Hydrating {
			out = append(out, h)
		}
	}
	return out
}
