"""Benchmarks: run each from the repository root as ``python -m benchmarks.NAME`` (the installed flowsentinel
package, no path edits); figures go to ``benchmarks/results/`` and ``docs/``."""
