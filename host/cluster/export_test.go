package cluster

// Halt ends the heartbeat without marking the node stopped, as a crash
// does.
func (h *Heartbeat) Halt() { h.halt() }
