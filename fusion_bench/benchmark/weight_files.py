"""Weights files in a request: what `fit` and `fusion-bench train` save (the state dict with the method, preset and
config it was made with) and the checked, code-free loading of such a file (`fuse --weights`); the authors' released
weights (`bench`/`fuse --weights FILE|zoo|zoo:NAME`, preset `released`) resolved through `fusion_bench.weights`
(catalogue, cache, hash-checked downloads, the method's converter) and loaded into the built method; the pretrained
initialisations a preset starts from, checked before any work (`check_initialisations`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from fusion_bench.benchmark.spec import BenchSpec, PreparedRun, ReleasedWeights
from fusion_bench.errors import BenchError
from fusion_bench.types import Task


def save_weights(model: L.LightningModule, prep: PreparedRun, path: Path) -> None:
    """Weights plus what they were made with (method, preset, config): plain dicts, strings and tensors only, so
    that `load_weights` can read them with torch.load(weights_only=True)."""
    torch.save({"method": prep.spec.method, "preset": prep.spec.preset, "config": prep.config,
                "state_dict": model.state_dict()}, path)


def load_plain(path: Path, option: str) -> Any:
    """A weights or checkpoint file read with torch.load(weights_only=True) (fusion_bench.weights.released.load_file):
    only tensors and plain containers load, so a file that carries code (a pickled object with __reduce__, ...) is
    refused and nothing in it runs; a file that is not such an archive, or is cut short, is refused too. Every
    refusal is a BenchError naming `option` and the file."""
    from fusion_bench.weights.released import load_file
    from fusion_bench.weights.zoo import WeightsError

    try:
        return load_file(path)
    except WeightsError as err:
        raise BenchError(f"{option} {err}") from err


def read_weights(path: str | Path, method: str, preset: str | None = None,
                 config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The state dict of a weights file from `fit` / `fusion-bench train`, after checking what it was made with.

    The file is unpickled with torch.load(weights_only=True): only tensors and plain containers load, so a file that
    carries code (a pickled object with __reduce__, ...) is refused and nothing in it runs. The recorded method,
    preset and model settings must match the request; every refusal is a BenchError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--weights {path}: no such file")
    checkpoint = load_plain(path, "--weights")
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise BenchError(f"--weights {path}: not a fusion-bench weights file (expected a dict with method, preset, "
                         "config and state_dict, as written by `fusion-bench train`)")
    if checkpoint.get("method") != method:
        raise BenchError(f"--weights {path} holds weights of method {checkpoint.get('method')!r}, not {method!r}")
    if preset is not None and checkpoint.get("preset") not in (None, preset):
        raise BenchError(f"--weights {path} holds weights of preset {checkpoint.get('preset')!r}; pass --preset "
                         f"{checkpoint.get('preset')} (or weights trained with --preset {preset})")
    recorded = (checkpoint.get("config") or {}).get("model") if isinstance(checkpoint.get("config"), dict) else None
    if config is not None and recorded is not None and recorded != config.get("model"):
        keys = sorted(k for k in set(recorded) | set(config["model"]) if recorded.get(k) != config["model"].get(k))
        raise BenchError(f"--weights {path} was trained with other model settings than preset {preset!r} now has "
                         f"(differing: {', '.join(keys)})")
    return checkpoint["state_dict"]


def load_weights(model: L.LightningModule, path: str | Path, method: str, preset: str | None = None,
                 config: dict[str, Any] | None = None) -> None:
    """Load weights saved by `fit` (or `fusion-bench train`) into `model` (see `read_weights` for the checks).
    Weights trained in float64 (`train.precision: 64-true`) make the model float64, so that it fuses as it trained."""
    state = read_weights(path, method, preset, config)
    if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in state.values()):
        model.double()
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise BenchError(f"--weights {path} does not fit method {method!r} as configured now: "
                         f"{str(err).splitlines()[0]}") from err


# ------------------------------------------------------------------------------------------------ released weights


def is_zoo_value(value: str | Path) -> bool:
    """`zoo` or `zoo:NAME` (a catalogue entry), not a file."""
    return str(value) == "zoo" or str(value).startswith("zoo:")


def own_weights_preset(value: str | Path) -> str | None:
    """The preset recorded in a weights file written by `fit` / `fusion-bench train` ("" when it records none), or
    None for `zoo`/`zoo:NAME` and any other file (the authors' released weights). Read with
    torch.load(weights_only=True); an unreadable or unsafe file is a BenchError naming it."""
    if is_zoo_value(value):
        return None
    from fusion_bench.weights import WeightsError
    from fusion_bench.weights.released import is_fusion_bench_file, load_file

    try:
        obj = load_file(value)
    except WeightsError as err:
        raise BenchError(f"--weights {value}: {err}") from err
    return str(obj.get("preset") or "") if is_fusion_bench_file(obj) else None


def fuse_weights(value: str | Path | None, preset: str | None) -> tuple[str, str | None, Path | None]:
    """`fuse --weights`: (the preset, released weights for `BenchSpec.weights`, a fusion-bench weights file for
    `evaluation.fuse_to_folder`). A file written by `fusion-bench train` loads as before (the preset it records
    unless --preset says otherwise); `zoo`, `zoo:NAME` and the authors' files are released weights (preset
    released)."""
    from fusion_bench.benchmark.protocol import request_preset

    if value is None:
        return preset or "smoke", None, None
    recorded = own_weights_preset(value)
    if recorded is not None:
        return preset or recorded or "smoke", None, Path(value)
    try:
        return request_preset(preset, [], value), str(value), None
    except ValueError as err:
        raise BenchError(str(err)) from err


def resolve_released_weights(spec: BenchSpec, task: Task) -> ReleasedWeights:
    """The released weights of a request (`spec.weights`: a file in the authors' format, `zoo` or `zoo:NAME`): the
    method must have a converter; a catalogue entry is fetched through the cache (a hash-checked download unless
    offline); the file is read once here (torch.load(weights_only=True) or safetensors, containers unwrapped), so a
    file that carries code, a fusion-bench weights file or an unreadable one is a BenchError before any work."""
    from fusion_bench.weights import WeightsError, find_released, read_state_dict, resolve_released, sha256_file
    from fusion_bench.weights.released import converter

    value = str(spec.weights)
    if not is_zoo_value(value) and not Path(value).expanduser().is_file():
        raise BenchError(f"--weights {value}: no such file (expected the authors' weights file, zoo or zoo:NAME)")
    if own_weights_preset(value) is not None:
        raise BenchError(f"--weights {value} was written by fusion-bench (`fusion-bench train`), not released by the "
                         "authors: bench trains its own model; fuse with this one through `fusion-bench fuse "
                         "--weights`")
    try:
        converter(spec.method)
        if is_zoo_value(value):
            resolved = resolve_released(spec.method, value, task=task.value, dataset=spec.dataset)
            entry = find_released(spec.method, task=task.value, dataset=spec.dataset, name=resolved.name)
            path, sha256, source = resolved.path, resolved.sha256, f"zoo:{entry.name} ({entry.source})"
        else:
            path = Path(value).expanduser()
            sha256, source = sha256_file(path), f"file {path.name}"
        read_state_dict(path)
    except WeightsError as err:
        raise BenchError(f"--weights {value}: {err}") from err
    return ReleasedWeights(path, sha256, spec.source or source)


def load_released(prep: PreparedRun, model: L.LightningModule) -> None:
    """Load the run's released weights into the built method through its converter (sha256 checked against the one
    resolved when the request was prepared, so the row names the file that was loaded)."""
    from fusion_bench.weights import WeightsError, load_released_weights

    released = prep.released
    assert released is not None
    try:
        sha256 = load_released_weights(prep.spec.method, model, released.path, task=prep.task.value)
    except WeightsError as err:
        raise BenchError(f"--weights {prep.spec.weights}: {err}") from err
    if sha256 != released.sha256:
        raise BenchError(f"--weights {released.path} changed while the run was starting (sha256 {sha256}, was "
                         f"{released.sha256})")


def check_initialisations(spec: BenchSpec, config: dict[str, Any]) -> dict[str, str]:
    """Every pretrained initialisation (`zoo:NAME`) of the run's config, resolved before any work: {dotted key:
    sha256}. One that is neither cached nor downloadable is a BenchError naming the file, the URL and the override
    that runs the from-scratch ablation (`--set KEY=null`, which the row then carries)."""
    from fusion_bench.weights import WeightsError, check_pretrained

    try:
        return {key: w.sha256 for key, w in check_pretrained(spec.method, spec.preset, config).items()}
    except WeightsError as err:
        raise BenchError(str(err)) from err


SETTINGS_KEY = "fusion_bench"  # where a fit's Lightning checkpoints record what they were made with (RecordSettings)
RESUMABLE_CHANGES = frozenset({"train.max_steps", "train.max_epochs", "train.checkpoint_every_n_steps",
                               "train.log_every_n_steps"})
"""Settings a resumed fit may change: how long it runs and how often it logs or saves (what the resumed steps then
use is what the request says, so the weights file records values that were used)."""


def settings_record(prep: PreparedRun) -> dict[str, Any]:
    """What a fit's checkpoints record under SETTINGS_KEY: method, preset and the effective config."""
    return {"method": prep.spec.method, "preset": prep.spec.preset, "config": prep.config}


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {prefix.rstrip("."): config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) and value else
                   {f"{prefix}{key}": value})
    return out


def check_resume_checkpoint(path: Path, prep: PreparedRun, model: L.LightningModule) -> None:
    """`--resume` from the Lightning checkpoint `path`: read without running code (see `load_plain`), made by a fit
    of the same method and preset with the same settings (but RESUMABLE_CHANGES), and holding weights that fit
    `model`. Otherwise a BenchError naming the file and what does not match: resuming would restore the checkpoint's
    optimiser state and schedule while the weights file recorded the request's settings."""
    if path.is_dir():  # a sharded checkpoint (a folder): Lightning's strategy reads and checks it
        return
    checkpoint = load_plain(path, "--resume: checkpoint")
    method, preset = prep.spec.method, prep.spec.preset
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise BenchError(f"--resume: checkpoint {path} is not a Lightning checkpoint of a fusion-bench fit (no "
                         "state_dict); remove it to train from the beginning")
    recorded = checkpoint.get(SETTINGS_KEY)
    if isinstance(recorded, dict):
        if recorded.get("method") != method or recorded.get("preset") != preset:
            raise BenchError(f"--resume: checkpoint {path} is a fit of method {recorded.get('method')!r} (preset "
                             f"{recorded.get('preset')}), not of {method!r} (preset {preset}); remove it or pass "
                             "another --out")
        then, now = _flat(recorded.get("config") or {}), _flat(prep.config)
        changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            shown = "; ".join(f"{k}: {then.get(k)!r} there, {now.get(k)!r} now" for k in changed[:4])
            raise BenchError(f"--resume: checkpoint {path} was trained with other settings ({shown}"
                             f"{'; ...' if len(changed) > 4 else ''}): resume with the settings it was trained with, "
                             "or train afresh (without --resume, or another --out)")
    state, expected = checkpoint["state_dict"], model.state_dict()
    missing = [k for k in expected if k not in state]
    shapes = [k for k in expected if k in state and isinstance(state[k], torch.Tensor)
              and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or shapes:
        what = (f"missing {', '.join(missing[:3])}" if missing else
                f"{shapes[0]} is {tuple(state[shapes[0]].shape)} there, {tuple(expected[shapes[0]].shape)} now")
        raise BenchError(f"--resume: checkpoint {path} does not fit method {method!r} as configured now ({what}); "
                         "remove it to train from the beginning, or pass another --out")
