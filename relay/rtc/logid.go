package rtc

// LogID names a session in logs by a prefix of its ID: the whole ID is
// the only secret needed to end or change the session.
func LogID(id string) string {
	if len(id) <= 6 {
		return "…"
	}
	return id[:6] + "…"
}
