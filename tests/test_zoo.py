"""The weights catalogue (benchmarks/zoo.yaml), the cache, hash-checked downloads and `zoo:NAME` initialisations.

Nothing is downloaded: "downloads" read file:// URLs of files made here, the Hugging Face cache is a folder made here,
and the offline paths run with FUSION_BENCH_OFFLINE=1 (the default of every test, tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import time
import urllib.error
from pathlib import Path

import pytest
import torch
import yaml

from fusion_bench.weights import pretrained as pretrained_mod
from fusion_bench.weights import zoo
from fusion_bench.weights.pretrained import (
    check_pretrained,
    required_pretrained,
    resolve_pretrained,
    without_pretrained,
)
from fusion_bench.weights.released import resolve_released
from fusion_bench.weights.zoo import (
    FetchError,
    WeightsError,
    cache_dir,
    fetch,
    file_hashes,
    find_released,
    load_catalogue,
    parse_catalogue,
)

CONTENT = b"not really weights, but bytes with a known hash\n" * 100


def _git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUSION_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "upstream" / "best.pth"
    path.parent.mkdir()
    path.write_bytes(CONTENT)
    return path


def _catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, released: list[dict], pretrained=()) -> Path:
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "released": released, "pretrained": list(pretrained)}))
    monkeypatch.setattr(zoo, "default_catalogue_path", lambda: path)
    return path


def _entry(url: str | None, **fields) -> dict:
    return {"name": "toy", "method": "cfi", "task": "ivif", "datasets": ["msrs"], "file": "toy.pth", "url": url,
            "sha256": hashlib.sha256(CONTENT).hexdigest(), "licence": "test", "source": "made here",
            "reproduces": "nothing", **fields}


# ------------------------------------------------------------------------------------------------
# the catalogue
# ------------------------------------------------------------------------------------------------


def test_the_shipped_catalogue_is_valid_and_consistent():
    catalogue = load_catalogue()
    assert {e.method for e in catalogue.released} == {"cfi", "seafusion", "swinfusion", "amdanet"}
    assert {e.name for e in catalogue.pretrained} >= {"mit_b4", "mit_b3"}
    cfi = find_released("cfi", "ivif", "tno")
    assert cfi.sha256 == "e8830268ad16eee19183360e26fee1480f7494e916b2c327899ae3faa9ff66bc" and cfi.size == 1_010_976
    for entry in catalogue.released:
        assert entry.reproduces and entry.licence and entry.source, entry.name
        if entry.method == "amdanet":  # Google Drive links, no published hash: never downloaded
            assert entry.expected_hash is None and "drive.google.com" in entry.url
    from fusion_bench.registry import names

    methods, datasets = set(names("method")), set(names("dataset"))
    for entry in catalogue.released:
        assert entry.method in methods and set(entry.datasets) <= datasets, entry.name
    with pytest.raises(WeightsError, match="several released weights of 'amdanet'.*zoo:amdanet_fmb"):
        find_released("amdanet", "ivif", "msrs")
    assert find_released("swinfusion", "medical", "harvard_ct_mri").name == "swinfusion_ct_mri"
    with pytest.raises(WeightsError, match="no released weights of method 'mean'.*amdanet, cfi"):
        find_released("mean")


@pytest.mark.parametrize(("change", "message"), [
    ({"sha256": "ABC"}, "sha256 must be 64 lower-case hex"),
    ({"git_blob": "123"}, "git_blob must be 40"),
    ({"task": "video"}, "task must be one of"),
    ({"file": "../escape.pth"}, "file must be a plain file name"),
    ({"url": "ftp://x/y"}, "url must start with"),
    ({"colour": "red"}, "unknown fields \\['colour'\\]"),
    ({"reproduces": None}, "missing required fields \\['reproduces'\\]"),
    ({"size": "big"}, "field 'size' must be int or null"),
    ({"datasets": [1]}, "field 'datasets' must be a list of strings"),
])
def test_catalogue_schema_errors_name_the_entry_and_field(tmp_path: Path, change: dict, message: str):
    entry = {**_entry("https://example.org/w.pth"), **change}
    with pytest.raises(WeightsError, match=rf"zoo\.yaml: released\[0\] \(toy\): {message}"):
        parse_catalogue({"version": 1, "released": [entry]}, tmp_path / "zoo.yaml")
    with pytest.raises(WeightsError, match="two released entries have the name 'toy'"):
        parse_catalogue({"version": 1, "released": [_entry(None), _entry(None)]}, tmp_path / "zoo.yaml")
    with pytest.raises(WeightsError, match="version must be 1"):
        parse_catalogue({"released": []}, tmp_path / "zoo.yaml")
    (tmp_path / "bad.yaml").write_text("released: [")
    with pytest.raises(WeightsError, match="bad.yaml is not valid YAML"):
        load_catalogue(tmp_path / "bad.yaml")


# ------------------------------------------------------------------------------------------------
# fetch: cache, hashes, downloads
# ------------------------------------------------------------------------------------------------


def test_fetch_downloads_checks_the_hash_and_then_hits_the_cache(tmp_path, monkeypatch, cache, source):
    monkeypatch.delenv("FUSION_BENCH_OFFLINE")
    _catalogue(tmp_path, monkeypatch, [_entry(source.as_uri())])
    entry = find_released("cfi", "ivif", "msrs")
    got = fetch(entry)
    assert got.path == cache / "released" / "toy.pth" and got.source == "download"
    assert got.path.read_bytes() == CONTENT and got.sha256 == hashlib.sha256(CONTENT).hexdigest()
    assert sorted(p.name for p in got.path.parent.iterdir()) == ["toy.pth"], "no temporary file is left"
    source.unlink()  # the second call never looks at the URL
    assert fetch(entry).source == "cache"
    assert resolve_released("cfi", "zoo", task="ivif", dataset="msrs").path == got.path
    assert resolve_released("cfi", "zoo:toy").sha256 == got.sha256
    with pytest.raises(WeightsError, match="expected a file, 'zoo' or 'zoo:NAME'"):
        resolve_released("cfi", "zoos")


def test_hash_mismatch_of_a_download_leaves_nothing_and_names_url_and_path(tmp_path, monkeypatch, cache, source):
    monkeypatch.delenv("FUSION_BENCH_OFFLINE")
    _catalogue(tmp_path, monkeypatch, [_entry(source.as_uri(), sha256="0" * 64)])
    with pytest.raises(FetchError) as err:
        fetch(find_released("cfi"))
    dest = cache / "released" / "toy.pth"
    message = str(err.value)
    assert f"has sha256 {hashlib.sha256(CONTENT).hexdigest()}, not the published sha256 {'0' * 64}" in message
    assert source.as_uri() in message and str(dest) in message and err.value.path == dest
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == [], "no partial or temporary file"


def test_a_cached_file_with_another_hash_is_an_error_not_overwritten(tmp_path, monkeypatch, cache, source):
    monkeypatch.delenv("FUSION_BENCH_OFFLINE")
    _catalogue(tmp_path, monkeypatch, [_entry(source.as_uri())])
    dest = cache / "released" / "toy.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"tampered")
    with pytest.raises(FetchError, match=r"the cached file has sha256 [0-9a-f]{64}, not the published .*delete it"):
        fetch(find_released("cfi"))
    assert dest.read_bytes() == b"tampered"


def test_offline_and_failed_downloads_name_the_url_hash_and_path(tmp_path, monkeypatch, cache, source):
    url = "https://example.org/releases/best.pth"
    _catalogue(tmp_path, monkeypatch, [_entry(url)])
    entry = find_released("cfi")
    dest = cache / "released" / "toy.pth"
    with pytest.raises(FetchError) as err:  # FUSION_BENCH_OFFLINE=1 (conftest)
        fetch(entry)
    message = str(err.value)
    assert "cannot be downloaded (FUSION_BENCH_OFFLINE=1)" in message and url in message
    assert f"sha256 {entry.sha256}" in message and f"put it at {dest}" in message
    monkeypatch.delenv("FUSION_BENCH_OFFLINE")

    def no_network(request, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(zoo, "URL_OPENER", no_network)
    with pytest.raises(FetchError, match=r"download from https://example\.org/releases/best\.pth failed.*name "
                                         r"resolution.*put it at .*toy\.pth"):
        fetch(entry)
    assert not dest.exists() and (not dest.parent.exists() or list(dest.parent.iterdir()) == [])
    # the user puts the file there by hand: served, hash-checked
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(CONTENT)
    assert fetch(entry).source == "cache"


def test_entries_without_a_hash_are_never_downloaded(tmp_path, monkeypatch, cache, source):
    monkeypatch.delenv("FUSION_BENCH_OFFLINE")
    _catalogue(tmp_path, monkeypatch, [_entry(source.as_uri(), sha256=None)])
    with pytest.raises(FetchError, match="no published hash.*Download file://.* by hand and put it at"):
        fetch(find_released("cfi"))
    assert not (cache / "released" / "toy.pth").exists()
    amdanet = find_released("amdanet", "ivif", "fmb", catalogue=load_catalogue(zoo.Path(__file__).parents[1] /
                                                                              "benchmarks" / "zoo.yaml"))
    with pytest.raises(FetchError, match="no published hash.*drive.google.com.*amdanet_fmb.pth"):
        fetch(amdanet)


def test_git_blob_ids_check_downloads_when_no_sha256_is_published(tmp_path, monkeypatch, cache, source):
    monkeypatch.delenv("FUSION_BENCH_OFFLINE")
    assert file_hashes(source) == (hashlib.sha256(CONTENT).hexdigest(), _git_blob(CONTENT))
    _catalogue(tmp_path, monkeypatch, [_entry(source.as_uri(), sha256=None, git_blob=_git_blob(CONTENT))])
    assert fetch(find_released("cfi")).sha256 == hashlib.sha256(CONTENT).hexdigest()
    (cache / "released" / "toy.pth").unlink()
    _catalogue(tmp_path, monkeypatch, [_entry(source.as_uri(), sha256=None, git_blob="f" * 40)])
    with pytest.raises(FetchError, match=f"has git blob {_git_blob(CONTENT)}, not the published git blob {'f' * 40}"):
        fetch(find_released("cfi"))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FUSION_BENCH_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FUSION_BENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fusion_bench"


# ------------------------------------------------------------------------------------------------
# zoo:NAME initialisations and the paper-preset check
# ------------------------------------------------------------------------------------------------


def _fake_hf_cache(root: Path, repo: str, filename: str, data: bytes) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/<file>}."""
    folder = root / f"models--{repo.replace('/', '--')}"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    path = folder / "snapshots" / rev / filename
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_required_pretrained_finds_zoo_references_in_the_paper_presets():
    from fusion_bench.base.method import load_method_config
    from fusion_bench.methods.amdanet.module import AMDANet

    paper = load_method_config(AMDANet, "amdanet", "paper", "fmb")
    (req,) = required_pretrained("amdanet", paper)
    assert (req.key, req.ref, req.entry.name, req.ablation) == ("model.pretrained", "zoo:mit_b4", "mit_b4",
                                                                "--set model.pretrained=null")
    assert required_pretrained("amdanet", {**paper, "model": {**paper["model"], "pretrained": None}}) == []
    released = without_pretrained(paper)  # the released preset: the checkpoint overwrites the initialisation
    assert released["model"]["pretrained"] is None and required_pretrained("amdanet", released) == []
    assert {k: v for k, v in released["model"].items() if k != "pretrained"} == \
        {k: v for k, v in paper["model"].items() if k != "pretrained"}
    assert required_pretrained("amdanet", load_method_config(AMDANet, "amdanet", "smoke")) == []
    from fusion_bench.methods.seafusion.module import SeAFusion

    (seg,) = required_pretrained("seafusion", load_method_config(SeAFusion, "seafusion", "paper", "msrs"))
    assert (seg.key, seg.entry.name, seg.entry.hf_repo) == ("model.segformer.pretrained", "mit_b0", "nvidia/mit-b0")
    with pytest.raises(WeightsError, match=r"model\.x\.1 = zoo:nothing: zoo:nothing is not in .*zoo:mit_b4"):
        required_pretrained("m", {"model": {"x": [None, "zoo:nothing"]}})


def test_check_pretrained_offline_names_the_file_the_cache_and_the_ablation(monkeypatch, cache, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    config = {"model": {"pretrained": "zoo:mit_b4"}}
    with pytest.raises(WeightsError) as err:
        check_pretrained("amdanet", "paper", config)
    assert str(err.value) == (
        "preset paper of amdanet starts from ImageNet MiT-B4 weights (zoo:mit_b4, model.pretrained): mit_b4.pth not "
        f"found in {cache / 'pretrained'} nor in the Hugging Face cache (huggingface.co/nvidia/mit-b4), and it "
        "cannot be downloaded (FUSION_BENCH_OFFLINE=1); put the file there, pass --set model.pretrained=PATH, or run "
        "the from-scratch ablation with --set model.pretrained=null")

    # "online" but no network: one short connection attempt (here to a closed local port), no retries, same advice
    monkeypatch.delenv("FUSION_BENCH_OFFLINE")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(pretrained_mod.urllib.request, "getproxies", dict)
    pretrained_mod._unreachable.cache_clear()
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=r"cannot be downloaded \(huggingface\.co/nvidia/mit-b4 cannot be "
                                           r"reached \(127\.0\.0\.1:9: .*--set model\.pretrained=null"):
        check_pretrained("amdanet", "paper", config)
    assert time.perf_counter() - start < 10
    pretrained_mod._unreachable.cache_clear()


def test_zoo_references_resolve_from_the_cache_the_hub_cache_or_a_download(monkeypatch, cache, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    hub_file = _fake_hf_cache(tmp_path / "hf", "nvidia/mit-b4", "pytorch_model.bin", b"hub bytes")
    got = resolve_pretrained("zoo:mit_b4")
    assert (got.path, got.source, got.sha256) == (hub_file, "hf-cache", hashlib.sha256(b"hub bytes").hexdigest())
    by_hand = cache / "pretrained" / "mit_b4.pth"  # the user's own mit_b4.pth wins over the hub cache
    by_hand.parent.mkdir(parents=True)
    by_hand.write_bytes(b"release file")
    assert resolve_pretrained("zoo:mit_b4").path == by_hand
    assert check_pretrained("amdanet", "paper", {"model": {"pretrained": "zoo:mit_b4"}})["model.pretrained"].path \
        == by_hand
    # online, nothing cached: a hub download into the hub cache (here a stand-in for hf_hub_download)
    monkeypatch.delenv("FUSION_BENCH_OFFLINE")
    downloaded = tmp_path / "downloaded.bin"
    downloaded.write_bytes(b"fresh")
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append(filename)
        from huggingface_hub import errors

        if filename == "model.safetensors":  # the repository has no such file: the next name is tried
            raise errors.EntryNotFoundError("no model.safetensors")
        return str(downloaded)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(pretrained_mod, "_unreachable", lambda endpoint: None)  # no connection attempt in tests
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    got = resolve_pretrained("zoo:mit_b3")
    assert (got.path, got.source, calls) == (downloaded, "hf-download", ["model.safetensors", "pytorch_model.bin"])
    assert resolve_pretrained(str(downloaded)).source == "file"
    with pytest.raises(WeightsError, match="nowhere.pth not found"):
        resolve_pretrained(tmp_path / "nowhere.pth")


def test_the_segmentation_evaluator_resolves_zoo_references_and_old_key_names(monkeypatch, cache, tmp_path):
    """`seg.pretrained: zoo:mit_b3` resolves through the cache, and hub files with transformers-4 names load."""
    from safetensors.torch import save_file

    from fusion_bench.evaluators.common import DownstreamError
    from fusion_bench.evaluators.segformer import build_segformer, resolve_weights
    from fusion_bench.evaluators.segmentation import seg_preset
    from fusion_bench.weights.segformer import from_release, to_release

    with pytest.raises(DownstreamError, match="mit_b3.pth not found"):
        resolve_weights("zoo:mit_b3")
    assert resolve_weights("w.pt") == "w.pt" and resolve_weights(None) is None
    torch.manual_seed(0)
    source = build_segformer(seg_preset("smoke"), num_classes=4)
    v4 = from_release(to_release(source.state_dict()), "v4")  # the hub's naming (nvidia/mit-b*)
    path = cache / "pretrained" / "mit_b3.pth"
    path.parent.mkdir(parents=True)
    save_file({f"segformer.{k}": v.contiguous() for k, v in v4.items()}, str(path))  # safetensors under .pth
    assert resolve_weights("zoo:mit_b3") == str(path)
    loaded = build_segformer(seg_preset("smoke", pretrained="zoo:mit_b3"), num_classes=4)
    ours = loaded.state_dict()
    encoder = [k for k in source.state_dict() if k.startswith("segformer.")]
    assert encoder and all(torch.equal(ours[k], source.state_dict()[k]) for k in encoder)
