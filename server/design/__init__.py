"""Design: server-side mesh operations for surgical planning (pure; see the design issue)."""
