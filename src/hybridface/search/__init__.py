"""Identification strategies behind one `Searcher` protocol (exhaustive, indexed, parallel, hybrid)."""
