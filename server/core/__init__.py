"""Cross-cutting concerns, one module each: db, auth, audit, bus, jobs, errors, metrics, logs."""
