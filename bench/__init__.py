"""Benchmarks of the fusionserve server (DESIGN §7); results go to docs/benchmarks.md."""
