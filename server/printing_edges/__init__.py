"""Printing's framework edges that are not its main REST router (server/printing/api.py) or SQL
repository: the printers and quota REST routers, their request dependencies, and the quota SQL. Kept
out of server/printing so that package holds the pure rules plus its named edges (docs/architecture.md)."""
