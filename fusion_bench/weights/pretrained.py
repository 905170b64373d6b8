"""Pretrained initialisations named in presets as `zoo:NAME`, and the check a preset runs before any work.

A method's config may hold `zoo:NAME` strings anywhere (AMDANet's `model.pretrained: zoo:mit_b4`). They name
`pretrained` entries of the catalogue (fusion_bench.weights.zoo). `resolve_pretrained` finds the file, in this order:
1. the cache file `<cache>/pretrained/<file>` (hash-checked when the catalogue publishes one; a file put there by hand
   is taken as it is when it does not);
2. the Hugging Face hub cache, for entries with `hf_repo` (e.g. transformers' `nvidia/mit-b4`; `HF_HOME` /
   `HF_HUB_CACHE` are honoured);
3. unless offline (`FUSION_BENCH_OFFLINE=1`, or `HF_HUB_OFFLINE=1` for the hub): a hash-checked download of `url`, else
   a hub download into the hub cache.
Nothing found is a WeightsError. `check_pretrained` words it for the CLI: which preset needs which file, where to put
it, and the `--set KEY=null` override that runs the from-scratch ablation instead (that override enters the row and
the config hash like any other). A preset therefore never trains from scratch silently.

A plain path instead of `zoo:NAME` is used as given (it must exist).
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from fusion_bench.weights.zoo import (
    OFFLINE_ENV,
    ResolvedWeights,
    WeightsError,
    ZooEntry,
    cache_path,
    fetch,
    find_pretrained,
    is_offline,
    sha256_file,
)

log = logging.getLogger(__name__)

ZOO_PREFIX = "zoo:"
HUB_PROBE_TIMEOUT_S = 5.0  # connecting to the hub before a download (a machine without network fails fast)


def is_zoo_ref(value: Any) -> bool:
    """True for a `zoo:NAME` string."""
    return isinstance(value, str) and value.startswith(ZOO_PREFIX)


@dataclass(frozen=True)
class Requirement:
    """A `zoo:NAME` reference found in a config: its dotted key (`model.pretrained`), the reference and its entry."""

    key: str
    ref: str
    entry: ZooEntry

    @property
    def ablation(self) -> str:
        """The override that runs without these weights (from scratch)."""
        return f"--set {self.key}=null"


def _walk(value: Any, key: str) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return [found for k, v in value.items() for found in _walk(v, f"{key}.{k}" if key else str(k))]
    if isinstance(value, (list, tuple)):
        return [found for i, v in enumerate(value) for found in _walk(v, f"{key}.{i}")]
    return [(key, value)] if is_zoo_ref(value) else []


def required_pretrained(method: str, config: Mapping[str, Any]) -> list[Requirement]:
    """Every `zoo:NAME` reference in a method's resolved config (preset + --config + --set), in config order.

    An unknown NAME is a WeightsError naming the key. `method` only words the messages."""
    out = []
    for key, ref in _walk(config, ""):
        try:
            entry = find_pretrained(ref[len(ZOO_PREFIX):])
        except WeightsError as err:
            raise WeightsError(f"{method}: {key} = {ref}: {err}") from err
        out.append(Requirement(key, ref, entry))
    return out


def without_pretrained(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with every `zoo:NAME` reference set to None: the configuration to build a module that will
    receive released weights (the `released` preset), which overwrite the initialisation, so it is neither needed nor
    resolved."""
    def strip(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(strip(v) for v in value)
        return None if is_zoo_ref(value) else value

    return strip(config)


# ------------------------------------------------------------------------------------------------
# Hugging Face hub
# ------------------------------------------------------------------------------------------------


def _hf_cached(entry: ZooEntry) -> Path | None:
    """The first of the entry's `hf_files` present in the hub cache, or None (also when huggingface_hub is not
    installed)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in entry.hf_files:
        found = try_to_load_from_cache(entry.hf_repo, filename, revision=entry.hf_revision)
        if isinstance(found, str):
            return Path(found)
    return None


@lru_cache(maxsize=4)
def _unreachable(endpoint: str) -> str | None:
    """Why `endpoint` (the hub's URL) cannot be reached, or None; one TCP connection with a short timeout, once per
    process (not behind a proxy). Without it a machine without network waits for the hub client's retries (about 30 s
    per file)."""
    parsed = urllib.parse.urlsplit(endpoint)
    if urllib.request.getproxies().get(parsed.scheme):  # through a proxy: let the hub client find out
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "", port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as err:
        return f"{parsed.hostname}:{port}: {err}"
    return None


def _hf_download(entry: ZooEntry) -> Path:
    """Download the first of the entry's `hf_files` the hub repo has, into the hub cache."""
    try:
        from huggingface_hub import constants, errors, hf_hub_download
    except ImportError as err:
        raise WeightsError(f"huggingface.co/{entry.hf_repo} needs huggingface_hub (pip install -e '.[segmentation]')"
                           ) from err
    if constants.HF_HUB_OFFLINE:
        raise WeightsError("HF_HUB_OFFLINE=1")
    reason = _unreachable(constants.ENDPOINT)
    if reason is not None:
        raise WeightsError(f"huggingface.co/{entry.hf_repo} cannot be reached ({reason})")
    for filename in entry.hf_files:
        try:
            return Path(hf_hub_download(entry.hf_repo, filename, revision=entry.hf_revision, etag_timeout=10))
        except errors.LocalEntryNotFoundError as err:  # no connection (or HF_HUB_OFFLINE) and not cached
            raise WeightsError(f"huggingface.co/{entry.hf_repo} cannot be reached ({err})") from err
        except errors.EntryNotFoundError:  # the repository has no such file: try the next name
            continue
        except (OSError, ValueError) as err:  # HTTP errors, gated/missing repository, connection errors
            raise WeightsError(f"huggingface.co/{entry.hf_repo}/{filename} could not be downloaded ({err})") from err
    raise WeightsError(f"huggingface.co/{entry.hf_repo} has none of {', '.join(entry.hf_files)}")


# ------------------------------------------------------------------------------------------------
# resolution
# ------------------------------------------------------------------------------------------------


def _local(path: str | Path) -> ResolvedWeights:
    path = Path(path).expanduser()
    if path.is_file():
        return ResolvedWeights(path, sha256_file(path), "file")
    if path.is_dir():  # a from_pretrained folder: the hash of its weights file
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return ResolvedWeights(path, sha256_file(path / name), "file")
        raise WeightsError(f"pretrained weights folder {path} holds neither model.safetensors nor pytorch_model.bin")
    raise WeightsError(f"pretrained weights {path} not found")


def _where(entry: ZooEntry) -> str:
    where = f"{cache_path(entry).name} not found in {cache_path(entry).parent}"
    if entry.hf_repo:
        where += f" nor in the Hugging Face cache (huggingface.co/{entry.hf_repo})"
    return where


def resolve_pretrained(ref: str | Path, download: bool | None = None) -> ResolvedWeights:
    """The file behind `zoo:NAME` (see the module docstring for the order), or a plain path as given.

    download=None downloads unless offline; False only looks at the caches. Raises WeightsError when nothing is found
    (the message names the cache file, the hub repository and the URL)."""
    if not is_zoo_ref(ref):
        return _local(ref)
    entry = find_pretrained(str(ref)[len(ZOO_PREFIX):])
    dest = cache_path(entry)
    if dest.is_file():
        if entry.expected_hash is not None:
            return fetch(entry, download=False)  # hash-checked; a mismatch is an error naming the file
        log.info("%s: using %s (put there by hand; the catalogue publishes no hash)", entry.ref, dest)
        return ResolvedWeights(dest, sha256_file(dest), "cache", entry.name)
    if entry.hf_repo:
        cached = _hf_cached(entry)
        if cached is not None:
            return ResolvedWeights(cached, sha256_file(cached), "hf-cache", entry.name)
    if is_offline() or download is False:
        why = f"{OFFLINE_ENV}=1" if is_offline() else "downloads are off"
        raise WeightsError(f"{entry.ref}: {_where(entry)}, and it cannot be downloaded ({why})")
    errors = []
    if entry.url and entry.expected_hash:
        try:
            return fetch(entry, download=True)
        except WeightsError as err:
            errors.append(str(err))
    if entry.hf_repo:
        try:
            path = _hf_download(entry)
            return ResolvedWeights(path, sha256_file(path), "hf-download", entry.name)
        except WeightsError as err:
            errors.append(str(err))
    if not errors:
        errors.append("the catalogue names no download with a published hash")
    raise WeightsError(f"{entry.ref}: {_where(entry)}, and it cannot be downloaded ({'; '.join(errors)})")


def check_pretrained(method: str, preset: str, config: Mapping[str, Any],
                     download: bool | None = None) -> dict[str, ResolvedWeights]:
    """Resolve every `zoo:NAME` of a run's config before any work: {dotted key: ResolvedWeights} (the sha256 is
    for the row's provenance). A reference that cannot be served raises WeightsError, e.g.

    preset paper of amdanet starts from ImageNet MiT-B4 weights (zoo:mit_b4, model.pretrained): mit_b4.pth not
    found in ~/.cache/fusion_bench/pretrained nor in the Hugging Face cache (huggingface.co/nvidia/mit-b4), and it
    cannot be downloaded (FUSION_BENCH_OFFLINE=1); put the file there, pass --set model.pretrained=PATH, or run the
    from-scratch ablation with --set model.pretrained=null
    """
    resolved = {}
    for req in required_pretrained(method, config):
        try:
            resolved[req.key] = resolve_pretrained(req.ref, download=download)
        except WeightsError as err:
            detail = str(err).removeprefix(f"{req.ref}: ")
            raise WeightsError(f"preset {preset} of {method} starts from {req.entry.what} ({req.ref}, {req.key}): "
                               f"{detail}; put the file there, pass --set {req.key}=PATH, or run the from-scratch "
                               f"ablation with {req.ablation}") from err
    return resolved
