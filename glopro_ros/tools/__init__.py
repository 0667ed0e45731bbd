"""Command line tools: replay, evaluate, simulate, train."""
