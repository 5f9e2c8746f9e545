"""Demonstration tools: a synthetic CCF archive and an HTTP server that behaves like ESA's."""
