"""The guard (issue #7): sees every access decision before data leaves, and contains a session
or an account that behaves like a scraper (step-up, suspension, lock, alerts)."""
