"""The weights catalogue (`benchmarks/zoo.yaml`), the local cache and hash-checked downloads.

Catalogue: two lists of entries, `released` (a method's trained weights as its authors published them, loaded with
`--weights zoo`) and `pretrained` (initialisations that presets name as `zoo:NAME`, e.g. ImageNet MiT-B4). The file is
checked against a schema when read; every problem is a `WeightsError` naming the entry and the field.

Cache: `$FUSION_BENCH_CACHE` (default `$XDG_CACHE_HOME/fusion_bench`, else `~/.cache/fusion_bench`), with
`released/<file>` and `pretrained/<file>`. `fetch(entry)` returns the cached file when its hash matches the
catalogue; otherwise it downloads the entry's URL (urllib) into a temporary file next to the destination, checks the
hash and renames it into place (atomic: a reader never sees a partial file, a failed download leaves nothing).
`FUSION_BENCH_OFFLINE=1` turns downloads off. An entry without a published hash (`sha256` or `git_blob`) is never
downloaded: the user fetches it by hand and passes the file. Every failure names the URL, the expected hash and the
exact path where the file can be put.

No torch import here: the CLI can read the catalogue cheaply.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

KINDS = ("released", "pretrained")
TASKS = ("ivif", "mfif", "meif", "medical", "classification")  # fusion_bench.types.Task values
OFFLINE_ENV = "FUSION_BENCH_OFFLINE"
CACHE_ENV = "FUSION_BENCH_CACHE"
DOWNLOAD_TIMEOUT_S = 20.0  # per network operation (connect, each read): an unreachable host fails within seconds
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_TRUE = ("1", "true", "yes", "on")

# the opener used for downloads (tests replace it; file:// URLs work with the default one)
URL_OPENER = urllib.request.urlopen


class WeightsError(ValueError):
    """A weights request that cannot be served: unknown entry, no file, offline, a wrong hash, a file that does not
    fit the network. The message names the file / URL and what to do; the CLI maps it to exit code 2."""


class FetchError(WeightsError):
    """`fetch` could not provide a catalogue file. `reason` says why; `url`, `path` (where the file can be put) and
    `expected` (the hash it must have) let callers word their own advice."""

    def __init__(self, message: str, *, reason: str, url: str | None, path: Path, expected: str | None):
        super().__init__(message)
        self.reason, self.url, self.path, self.expected = reason, url, path, expected


@dataclass(frozen=True)
class ZooEntry:
    """One catalogue entry (see benchmarks/zoo.yaml for the field meanings)."""

    kind: str
    name: str
    file: str
    licence: str
    source: str
    url: str | None = None
    sha256: str | None = None
    git_blob: str | None = None
    size: int | None = None
    notes: str = ""
    # released weights
    method: str | None = None
    task: str | None = None
    datasets: tuple[str, ...] = ()
    reproduces: str | None = None
    # pretrained initialisations
    what: str | None = None
    hf_repo: str | None = None
    hf_revision: str | None = None
    hf_files: tuple[str, ...] = ()
    used_by: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """How presets and the CLI name it: `zoo:NAME`."""
        return f"zoo:{self.name}"

    @property
    def expected_hash(self) -> str | None:
        """The published hash as text ('sha256 <hex>' or 'git blob <hex>'), or None."""
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.git_blob:
            return f"git blob {self.git_blob}"
        return None


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file ready to load: where it is, its sha256 (for the row's provenance) and where it came from
    ('cache', 'download', 'hf-cache', 'hf-download' or 'file' for a path the user gave)."""

    path: Path
    sha256: str
    source: str
    name: str | None = None


@dataclass(frozen=True)
class Catalogue:
    """The parsed catalogue: entries by kind, and the file it came from."""

    path: Path
    released: tuple[ZooEntry, ...] = ()
    pretrained: tuple[ZooEntry, ...] = field(default_factory=tuple)

    def entries(self) -> tuple[ZooEntry, ...]:
        return (*self.released, *self.pretrained)


# ------------------------------------------------------------------------------------------------
# catalogue
# ------------------------------------------------------------------------------------------------

_COMMON = {"name": str, "file": str, "licence": str, "source": str, "url": (str, type(None)),
           "sha256": (str, type(None)), "git_blob": (str, type(None)), "size": (int, type(None)), "notes": str}
_REQUIRED = {"released": ("name", "file", "licence", "source", "method", "task", "reproduces"),
             "pretrained": ("name", "file", "licence", "source", "what")}
_SPECIFIC = {"released": {"method": str, "task": str, "datasets": list, "reproduces": str},
             "pretrained": {"what": str, "hf_repo": (str, type(None)), "hf_revision": (str, type(None)),
                            "hf_files": list, "used_by": list}}


def default_catalogue_path() -> Path:
    """`benchmarks/zoo.yaml` of the source checkout, else the copy shipped in the package (`fusion_bench/_benchmarks`,
    as the protocols)."""
    checkout = Path(__file__).resolve().parents[2] / "benchmarks" / "zoo.yaml"
    if checkout.is_file():
        return checkout
    return Path(str(resources.files("fusion_bench") / "_benchmarks" / "zoo.yaml"))


def _entry(kind: str, raw: Any, where: str) -> ZooEntry:
    if not isinstance(raw, dict):
        raise WeightsError(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
    name = raw.get("name", "?")
    where = f"{where} ({name})"
    schema = {**_COMMON, **_SPECIFIC[kind]}
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise WeightsError(f"{where}: unknown fields {unknown}; valid fields: {', '.join(schema)}")
    missing = [k for k in _REQUIRED[kind] if raw.get(k) in (None, "")]
    if missing:
        raise WeightsError(f"{where}: missing required fields {missing}")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, schema[key]):
            raise WeightsError(f"{where}: field {key!r} must be {_type_name(schema[key])}, got {value!r}")
        if schema[key] is list and not all(isinstance(v, str) for v in value):
            raise WeightsError(f"{where}: field {key!r} must be a list of strings, got {value!r}")
    if not _NAME.fullmatch(raw["name"]):
        raise WeightsError(f"{where}: name must be lower-case letters, digits, '_', '.', '-', got {raw['name']!r}")
    if "/" in raw["file"] or "\\" in raw["file"] or raw["file"] in (".", ".."):
        raise WeightsError(f"{where}: file must be a plain file name (it is stored under the cache folder), got "
                           f"{raw['file']!r}")
    if raw.get("sha256") is not None and not _SHA256.fullmatch(raw["sha256"]):
        raise WeightsError(f"{where}: sha256 must be 64 lower-case hex digits, got {raw['sha256']!r}")
    if raw.get("git_blob") is not None and not _SHA1.fullmatch(raw["git_blob"]):
        raise WeightsError(f"{where}: git_blob must be 40 lower-case hex digits, got {raw['git_blob']!r}")
    url = raw.get("url")
    if url is not None and not url.startswith(("https://", "http://", "file://")):
        raise WeightsError(f"{where}: url must start with https://, http:// or file://, got {url!r}")
    if kind == "released" and raw["task"] not in TASKS:
        raise WeightsError(f"{where}: task must be one of {', '.join(TASKS)}, got {raw['task']!r}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return ZooEntry(kind=kind, **values)


def _type_name(t: Any) -> str:
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in types)


def parse_catalogue(data: Any, path: Path) -> Catalogue:
    """Check a loaded catalogue against the schema and build it; errors name `path` and the entry."""
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a mapping with 'version', 'released' and 'pretrained'")
    unknown = sorted(set(data) - {"version", *KINDS})
    if unknown:
        raise WeightsError(f"{path}: unknown top-level keys {unknown}; valid: version, released, pretrained")
    if data.get("version") != 1:
        raise WeightsError(f"{path}: version must be 1, got {data.get('version')!r}")
    lists: dict[str, tuple[ZooEntry, ...]] = {}
    for kind in KINDS:
        raw = data.get(kind) or []
        if not isinstance(raw, list):
            raise WeightsError(f"{path}: {kind!r} must be a list of entries")
        lists[kind] = tuple(_entry(kind, item, f"{path}: {kind}[{i}]") for i, item in enumerate(raw))
        for attr in ("name", "file"):
            seen: set[str] = set()
            for entry in lists[kind]:
                value = getattr(entry, attr)
                if value in seen:
                    raise WeightsError(f"{path}: two {kind} entries have the {attr} {value!r}")
                seen.add(value)
    return Catalogue(path, lists["released"], lists["pretrained"])


@lru_cache(maxsize=8)
def _load(path: Path, mtime: float) -> Catalogue:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise WeightsError(f"weights catalogue {path} cannot be read: {err}") from err
    except yaml.YAMLError as err:
        raise WeightsError(f"weights catalogue {path} is not valid YAML: {err}") from err
    return parse_catalogue(data, path)


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The catalogue at `path` (default: `default_catalogue_path()`), schema-checked; cached until the file
    changes."""
    path = Path(path) if path is not None else default_catalogue_path()
    if not path.is_file():
        raise WeightsError(f"weights catalogue {path} not found (a source checkout has benchmarks/zoo.yaml; an "
                           "installed package ships it as fusion_bench/_benchmarks/zoo.yaml)")
    return _load(path, path.stat().st_mtime)


def find_pretrained(name: str, catalogue: Catalogue | None = None) -> ZooEntry:
    """The `pretrained` entry called `name` (an unknown name lists the valid ones)."""
    catalogue = catalogue or load_catalogue()
    for entry in catalogue.pretrained:
        if entry.name == name:
            return entry
    valid = ", ".join(f"zoo:{e.name}" for e in catalogue.pretrained)
    raise WeightsError(f"zoo:{name} is not in {catalogue.path} (pretrained entries: {valid})")


def find_released(method: str, task: str | None = None, dataset: str | None = None, name: str | None = None,
                  catalogue: Catalogue | None = None) -> ZooEntry:
    """The released weights of `method` for a run on `dataset` (of `task`): the entry called `name` if given; else
    the one entry of the method and task that lists the dataset, else the only entry of the method and task. No
    entry, or several and none listing the dataset, is a WeightsError listing the candidates."""
    catalogue = catalogue or load_catalogue()
    own = [e for e in catalogue.released if e.method == method]
    if name is not None:
        for entry in own:
            if entry.name == name:
                if task is not None and entry.task != task:
                    raise WeightsError(f"zoo:{name} holds {entry.task} weights of {method}; this run is {task}")
                return entry
        valid = ", ".join(f"zoo:{e.name}" for e in own) or "none"
        raise WeightsError(f"no released weights zoo:{name} of method {method!r} in {catalogue.path} (its entries: "
                           f"{valid})")
    if not own:
        have = sorted({e.method for e in catalogue.released if e.method})
        raise WeightsError(f"{catalogue.path} lists no released weights of method {method!r} (methods with released "
                           f"weights: {', '.join(have)})")
    fitting = [e for e in own if task is None or e.task == task]
    if not fitting:
        tasks = ", ".join(sorted({str(e.task) for e in own}))
        raise WeightsError(f"the released weights of {method!r} are for {tasks}, not {task}")
    listing = [e for e in fitting if dataset is not None and dataset in e.datasets]
    if len(listing) == 1:
        return listing[0]
    if len(fitting) == 1:
        return fitting[0]
    options = "; ".join(f"zoo:{e.name} ({', '.join(e.datasets) or e.task})" for e in fitting)
    raise WeightsError(f"several released weights of {method!r} could serve dataset {dataset!r}: {options}; pick one "
                       "with --weights zoo:NAME")


# ------------------------------------------------------------------------------------------------
# cache, hashes, downloads
# ------------------------------------------------------------------------------------------------


def is_offline() -> bool:
    """True when `FUSION_BENCH_OFFLINE` is set to 1/true/yes/on: nothing is downloaded (the Hugging Face hub also
    honours its own `HF_HUB_OFFLINE`)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE


def cache_dir() -> Path:
    """`$FUSION_BENCH_CACHE`, else `$XDG_CACHE_HOME/fusion_bench`, else `~/.cache/fusion_bench` (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fusion_bench"


def cache_path(entry: ZooEntry) -> Path:
    """Where the entry's file lives in the cache (and where a user can put it by hand)."""
    return cache_dir() / entry.kind / entry.file


def file_hashes(path: str | Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file in one pass; the git blob id is sha1(b"blob <size>\\0" + content), the id
    a git repository gives the file, so a download can be checked against a repository's tree. Remembered per
    (path, size, modification time): a run resolves the same weights several times."""
    path = Path(path).resolve()
    stat = path.stat()
    return _file_hashes(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_hashes(path: Path, size: int, mtime_ns: int) -> tuple[str, str]:
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file (hex)."""
    return file_hashes(path)[0]


def _mismatch(path: Path, entry: ZooEntry) -> tuple[str, str] | None:
    """None when the file has the entry's published hash, else (what was expected, what was found)."""
    sha256, blob = file_hashes(path)
    if entry.sha256 and sha256 != entry.sha256:
        return f"sha256 {entry.sha256}", f"sha256 {sha256}"
    if not entry.sha256 and entry.git_blob and blob != entry.git_blob:
        return f"git blob {entry.git_blob}", f"git blob {blob}"
    return None


def _fetch_error(entry: ZooEntry, reason: str, dest: Path) -> FetchError:
    what = f"{entry.kind} weights zoo:{entry.name}" + (f" ({entry.method})" if entry.method else "")
    source = entry.url or (f"huggingface.co/{entry.hf_repo}" if entry.hf_repo else entry.source)
    expected = entry.expected_hash
    check = f" ({expected})" if expected else ""
    message = (f"{what}: {reason}. Download {source}{check} by hand and put it at {dest}, or pass the downloaded file "
               "itself")
    return FetchError(message, reason=reason, url=entry.url, path=dest, expected=expected)


def fetch(entry: ZooEntry, download: bool | None = None) -> ResolvedWeights:
    """The entry's file: the cached copy when its hash matches the catalogue, else a hash-checked download.

    download=None downloads unless offline (`FUSION_BENCH_OFFLINE`); False never downloads. Raises FetchError (a
    WeightsError) when the entry publishes no hash or no URL, when a cached file has another hash, when offline,
    when the download fails or gives a file of another hash; the message names the URL, the expected hash and the
    path where the file can be put by hand.
    """
    dest = cache_path(entry)
    if entry.expected_hash is None:
        raise _fetch_error(entry, "the catalogue has no published hash for it, so it is never downloaded or taken "
                           "from the cache unchecked", dest)
    if dest.is_file():
        bad = _mismatch(dest, entry)
        if bad is not None:
            raise _fetch_error(entry, f"the cached file has {bad[1]}, not the published {bad[0]} (delete it to "
                               "download again)", dest)
        return ResolvedWeights(dest, sha256_file(dest), "cache", entry.name)
    if entry.url is None:
        raise _fetch_error(entry, "it is not in the cache and the catalogue has no download URL for it", dest)
    if is_offline() or download is False:
        why = f"{OFFLINE_ENV}=1" if is_offline() else "downloads are off"
        raise _fetch_error(entry, f"it is not in the cache and cannot be downloaded ({why})", dest)
    try:
        sha256 = download_file(entry.url, dest, entry)
    except WeightsError as err:
        raise _fetch_error(entry, str(err), dest) from err
    return ResolvedWeights(dest, sha256, "download", entry.name)


def download_file(url: str, dest: Path, entry: ZooEntry | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> str:
    """Download `url` to `dest` through a temporary file in dest's folder, check it against `entry`'s hash and
    rename it into place; returns the sha256. On any failure nothing is left behind and WeightsError says why."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        log.info("downloading %s to %s", url, dest)
        request = urllib.request.Request(url, headers={"User-Agent": "fusion-bench"})
        with os.fdopen(fd, "wb") as out, URL_OPENER(request, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if entry is not None:
            bad = _mismatch(tmp, entry)
            if bad is not None:
                raise WeightsError(f"the download from {url} has {bad[1]}, not the published {bad[0]}")
        sha256 = sha256_file(tmp)
        os.replace(tmp, dest)
        return sha256
    except (OSError, ValueError, http.client.HTTPException) as err:
        if isinstance(err, WeightsError):
            raise
        raise WeightsError(f"the download from {url} failed ({err})") from err
    finally:
        tmp.unlink(missing_ok=True)


def entry_fields() -> tuple[str, ...]:
    """The field names of a catalogue entry (for documentation and tests)."""
    return tuple(f.name for f in fields(ZooEntry) if f.name != "kind")
