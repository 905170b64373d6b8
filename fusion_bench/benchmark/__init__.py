"""The benchmark: a request run seed by seed into result rows, and what is done with the rows.

A run, in the order it happens: spec.py (the request and the prepared run) -> request.py (`prepare`: validation,
with checks.py, config.py for the method's configuration and overrides, build.py for the datamodule and method) ->
runner.py (the orchestration: seeds, locks, rows) -> training.py (fit, with trainer_settings.py, callbacks.py,
weights.py) -> scoring.py (a seed's row: evaluation.py for the split pass, downstream.py, profiling.py,
provenance.py) -> run_dirs.py, timing.py. mixture.py: one model trained on several datasets, run through the same
pipeline. Around it: protocol.py (benchmarks/ files, presets, config hash), results.py and leaderboard.py (raw rows
and their aggregation), grid.py and jobs.py (many runs on a scheduler), distributed.py (multi-device fits),
regress.py (the regression suite), wandb_log.py.
"""
