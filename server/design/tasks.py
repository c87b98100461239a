"""Design job kinds (filled in with the design core)."""
