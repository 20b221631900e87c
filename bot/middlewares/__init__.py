"""Cross-cutting concerns around every update."""
