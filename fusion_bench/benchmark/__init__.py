"""Benchmark runner, result rows, leaderboards, profiling and regression."""
