"""Downstream evaluators: metric conventions, presets, folder loading, and the sanity check that they learn
from pixels (an information-keeping fusion beats a constant image, which scores near the background-only level).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch

from fusion_bench.data.io import write_png
from fusion_bench.data.synthetic import SyntheticIVIF, ensure_generated
from fusion_bench.errors import DownstreamError
from fusion_bench.evaluators.common import FusedImages, fused_paths, to_rgb
from fusion_bench.evaluators.segmentation import (
    SEG_PRESETS,
    evaluate_segmentation,
    evaluate_segmentation_folders,
    load_masks,
    lr_at,
    seg_preset,
    seg_scores,
)


@pytest.fixture(scope="module")
def ivif(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """synthetic-ivif train/test: max-fused images, constant images, masks (generated once per module)."""
    from fusion_bench.methods.baselines.model import MaxFusion

    root = ensure_generated("synthetic-ivif", tmp_path_factory.mktemp("ivif") / "synthetic-ivif")
    train, test = SyntheticIVIF(root, "train"), SyntheticIVIF(root, "test")
    fusion = MaxFusion()

    def fuse(ds: SyntheticIVIF) -> list[torch.Tensor]:
        return [fusion.fuse(s["ir"][None], s["vis"][None])[0] for s in (ds[i] for i in range(len(ds)))]

    max_train, max_test = fuse(train), fuse(test)
    return {"train": train, "test": test, "max_train": max_train, "max_test": max_test,
            "const_train": [torch.full_like(x, 0.5) for x in max_train],
            "const_test": [torch.full_like(x, 0.5) for x in max_test],
            "train_masks": load_masks(train, progress=False), "test_masks": load_masks(test, progress=False)}


def _prior_mious(train_masks: list[torch.Tensor], test_masks: list[torch.Tensor], num_classes: int,
                 size: tuple[int, int]) -> tuple[float, float]:
    """mIoU of the two input-free predictors: the majority training class everywhere (background-only level)
    and the per-pixel majority class map at `size` (the scene-layout prior a model can learn without pixels)."""
    from fusion_bench.evaluators.segmentation import _resize_mask

    votes = torch.zeros(num_classes, *size)
    for m in train_masks:
        votes += torch.nn.functional.one_hot(_resize_mask(m, size).clamp(max=num_classes - 1), num_classes).permute(
            2, 0, 1)
    layout = votes.argmax(0)
    majority = int(votes.sum((1, 2)).argmax())
    out = []
    for prior in (torch.full(size, majority), layout):
        cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
        for m in test_masks:
            pred = _resize_mask(prior, tuple(m.shape)).flatten()
            gt = m.long().flatten()
            keep = gt != 255
            cm += torch.bincount(gt[keep] * num_classes + pred[keep], minlength=num_classes**2).view(
                num_classes, num_classes)
        out.append(seg_scores(cm, [str(i) for i in range(num_classes)])["seg_miou"])
    return out[0], out[1]


@pytest.fixture
def one_thread():
    """Training runs use one intra-op thread: on shared CPUs, oversubscribed threads run ~6x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ------------------------------------------------------------------------------------------------ unit


def test_seg_scores_convention_matches_torchmetrics() -> None:
    from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (2, 16, 16), generator=gen)
    target[0, :2] = 255
    noise = torch.randint(0, 4, target.shape, generator=gen)
    pred = torch.where(torch.rand(target.shape, generator=gen) < 0.7, target.clamp(max=3), noise)
    cm = MulticlassConfusionMatrix(4, ignore_index=255)(pred, target)
    scores = seg_scores(cm, ["bg", "a", "b", "c"])
    jaccard = MulticlassJaccardIndex(4, average="none", ignore_index=255)(pred, target)
    assert scores["seg_background_counts"] is True
    ious = torch.tensor(list(scores["seg_iou_per_class"].values()), dtype=torch.float64)
    assert torch.allclose(ious, jaccard.double(), atol=1e-6)
    assert math.isclose(scores["seg_miou"], float(jaccard.mean()), abs_tol=1e-6)
    valid = target != 255
    assert math.isclose(scores["seg_pixel_acc"], float((pred[valid] == target[valid]).float().mean()), abs_tol=1e-6)
    no_bg = seg_scores(cm, ["bg", "a", "b", "c"], include_background=False)
    assert math.isclose(no_bg["seg_miou"], float(jaccard[1:].mean()), abs_tol=1e-6)


def test_seg_scores_absent_class_is_nan_and_left_out() -> None:
    cm = torch.tensor([[5, 1, 0], [1, 3, 0], [0, 0, 0]])
    scores = seg_scores(cm, ["bg", "a", "never"])
    assert math.isnan(scores["seg_iou_per_class"]["never"])
    assert math.isclose(scores["seg_miou"], (5 / 7 + 3 / 5) / 2)


def test_presets_follow_the_protocol() -> None:
    # with pretrained weights (the paper fine-tunes SegMiF's model): frozen 30 epochs, 5e-4 -> 3e-5 -> 0
    paper = SEG_PRESETS["paper"].replace(pretrained="segmif_b3.safetensors")
    assert (paper.variant, paper.epochs, paper.batch_size, paper.freeze_backbone_epochs) == ("b3", 80, 12, 30)
    assert (paper.lr, paper.lr_unfrozen, paper.early_stopping_patience) == (5e-4, 3e-5, 10)
    assert math.isclose(lr_at(paper, 0), 5e-4) and math.isclose(lr_at(paper, 30), 3e-5)
    assert lr_at(paper, 15) < 5e-4 and lr_at(paper, 79.99) < 1e-6
    # from scratch: no freeze (a frozen random encoder is no fine-tuning), one cosine 5e-4 -> 0 over 80 epochs
    scratch = SEG_PRESETS["paper"]
    assert (scratch.pretrained, scratch.freeze_backbone_epochs, scratch.freeze_skipped_epochs) == (None, 0, 30)
    assert math.isclose(lr_at(scratch, 0), 5e-4) and math.isclose(lr_at(scratch, 40), 2.5e-4)
    smoke = seg_preset("smoke", epochs=3)
    assert smoke.epochs == 3 and smoke.variant == "b0"
    with pytest.raises(ValueError, match="valid: smoke, paper"):
        seg_preset("huge")
    with pytest.raises(ValueError, match="unknown SegFormer variant"):
        seg_preset("smoke", variant="b9")


def test_to_rgb_and_fused_paths(tmp_path: Path, ivif: dict) -> None:
    assert to_rgb(torch.zeros(1, 4, 5)).shape == (3, 4, 5)
    assert to_rgb(torch.zeros(4, 4, 5)).shape == (3, 4, 5)
    test = ivif["test"]
    for i, ref in enumerate(test.samples[:-2]):
        write_png(tmp_path / f"{ref.name}.png", ivif["max_test"][i])
    with pytest.raises(DownstreamError, match="2 of 16 fused images .* missing"):
        fused_paths(tmp_path, test)
    with pytest.raises(DownstreamError, match="does not exist"):
        fused_paths(tmp_path / "nope", test)


@pytest.mark.parametrize("variant", ["b0", "b3"])
def test_segformer_builds_from_config_offline(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    from fusion_bench.evaluators.segformer import build_segformer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = build_segformer(seg_preset("paper", variant=variant), num_classes=9)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    assert (3.0 < n_params < 4.5) if variant == "b0" else (44 < n_params < 48)
    logits = model(pixel_values=torch.zeros(1, 3, 64, 64)).logits
    assert logits.shape == (1, 9, 16, 16)


def test_pretrained_weights_by_path(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from fusion_bench.evaluators.segformer import build_segformer

    cfg = seg_preset("smoke")
    torch.manual_seed(1)
    source = build_segformer(cfg, num_classes=3)
    torch.save(source.segformer.state_dict(), tmp_path / "backbone.pt")  # backbone-only keys, no prefix
    loaded = build_segformer(cfg.replace(pretrained=str(tmp_path / "backbone.pt")), num_classes=6)
    key = next(k for k in source.segformer.state_dict() if k.endswith("weight"))
    assert torch.equal(loaded.segformer.state_dict()[key], source.segformer.state_dict()[key])
    source.save_pretrained(tmp_path / "folder")
    from_folder = build_segformer(cfg.replace(pretrained=str(tmp_path / "folder")), num_classes=6)
    assert torch.equal(from_folder.segformer.state_dict()[key], source.segformer.state_dict()[key])
    assert from_folder.decode_head.classifier.out_channels == 6
    with pytest.raises(DownstreamError, match="not found"):
        build_segformer(cfg.replace(pretrained=str(tmp_path / "missing.pt")), num_classes=6)


def test_backbone_freeze_only_with_pretrained_weights(ivif: dict, tmp_path: Path, one_thread: None) -> None:
    """The paper preset's 30 frozen epochs fine-tune pretrained weights; without weights nothing is frozen, and
    the effective config (in the result, the row's config hash) says what was dropped."""
    pytest.importorskip("transformers")
    from dataclasses import asdict

    from fusion_bench.benchmark.downstream import evaluator_config
    from fusion_bench.benchmark.protocol import load_protocol
    from fusion_bench.evaluators.segformer import build_segformer
    from fusion_bench.types import Task

    protocol = load_protocol("fmb", Task.IVIF)
    row_config = asdict(evaluator_config("seg", "paper", protocol))  # what enters the row's config hash
    assert (row_config["pretrained"], row_config["freeze_backbone_epochs"], row_config["freeze_skipped_epochs"]) \
        == (None, 0, 30)
    with_weights = {**protocol, "presets": {"paper": {"seg": {"pretrained": str(tmp_path / "w.pt")}}}}
    assert evaluator_config("seg", "paper", with_weights).freeze_backbone_epochs == 30
    # the freeze follows the weights both ways, whatever order the fields are set in
    paper = seg_preset("paper")
    assert paper.replace(pretrained="w.pt").freeze_backbone_epochs == 30
    assert paper.replace(pretrained="w.pt").replace(pretrained=None) == paper
    assert seg_preset("paper", freeze_backbone_epochs=5).freeze_skipped_epochs == 5
    # training: a requested freeze without weights leaves the encoder trainable; with weights it is frozen
    tiny = seg_preset("smoke", epochs=1, batch_size=4, image_size=(32, 40), hidden_sizes=(8, 16, 32, 64),
                      decoder_hidden_size=8, freeze_backbone_epochs=1)
    data = (ivif["max_train"][:4], ivif["train_masks"][:4], ivif["max_test"][:2], ivif["test_masks"][:2], 6)
    scratch = evaluate_segmentation(*data, tiny, seed=0, log_dir=tmp_path / "scratch", progress=False)
    assert scratch["seg_config"]["freeze_skipped_epochs"] == 1
    assert (tmp_path / "scratch" / "seg_train_log.csv").read_text().splitlines()[1].split(",")[1] == "False"
    torch.manual_seed(0)
    torch.save(build_segformer(tiny, num_classes=6).state_dict(), tmp_path / "w.pt")
    tuned = evaluate_segmentation(*data, tiny.replace(pretrained=str(tmp_path / "w.pt")), seed=0,
                                  log_dir=tmp_path / "tuned", progress=False)
    assert tuned["seg_config"]["freeze_backbone_epochs"] == 1
    assert (tmp_path / "tuned" / "seg_train_log.csv").read_text().splitlines()[1].split(",")[1] == "True"


# ------------------------------------------------------------------------------------------------ sanity


def test_segmentation_learns_from_pixels(ivif: dict, tmp_path: Path, one_thread: None) -> None:
    """smoke preset: max fusion >> constant image ~ background-only level; seeded runs repeat exactly."""
    pytest.importorskip("transformers")
    names = SyntheticIVIF.class_names
    start = time.perf_counter()
    good = evaluate_segmentation(ivif["max_train"], ivif["train_masks"], ivif["max_test"], ivif["test_masks"],
                                 len(names), "smoke", class_names=names, seed=0, log_dir=tmp_path / "max",
                                 progress=False)
    const = evaluate_segmentation(ivif["const_train"], ivif["train_masks"], ivif["const_test"], ivif["test_masks"],
                                  len(names), "smoke", class_names=names, seed=0, progress=False)
    elapsed = time.perf_counter() - start
    majority, layout = _prior_mious(ivif["train_masks"], ivif["test_masks"], len(names),
                                    SEG_PRESETS["smoke"].image_size)
    print(f"seg mIoU max {good['seg_miou']:.3f} const {const['seg_miou']:.3f} | input-free levels: majority "
          f"{majority:.3f}, layout prior {layout:.3f} ({good['seg_seconds_per_epoch']:.2f} s/epoch, "
          f"{elapsed:.0f} s for both)")
    # A constant image carries no pixel information, but zero padding lets SegFormer learn where classes sit
    # (sky on top, road below), so its floor is the per-pixel layout prior, not the majority class alone.
    assert const["seg_miou"] < layout + 0.08
    assert good["seg_miou"] > const["seg_miou"] + 0.15
    assert good["seg_miou"] > layout + 0.15 > majority
    assert set(good["seg_iou_per_class"]) == set(names)
    assert (tmp_path / "max" / "seg_train_log.csv").is_file() and (tmp_path / "max" / "seg_result.json").is_file()


@pytest.mark.slow
def test_segmentation_is_deterministic_and_folder_entry_point(ivif: dict, tmp_path: Path, one_thread: None) -> None:
    pytest.importorskip("transformers")
    for split in ("train", "test"):
        for ref, image in zip(ivif[split].samples, ivif[f"max_{split}"], strict=True):
            write_png(tmp_path / split / f"{ref.name}.png", image)
    cfg = seg_preset("smoke", epochs=2)
    a = evaluate_segmentation_folders(tmp_path / "train", tmp_path / "test", ivif["train"], ivif["test"], cfg,
                                      seed=3, progress=False)
    b = evaluate_segmentation(FusedImages(sorted((tmp_path / "train").glob("*.png"))), ivif["train_masks"],
                              FusedImages(sorted((tmp_path / "test").glob("*.png"))), ivif["test_masks"], 6, cfg,
                              class_names=SyntheticIVIF.class_names, seed=3, progress=False)
    assert a["seg_confusion"] == b["seg_confusion"] and a["seg_miou"] == b["seg_miou"]


@pytest.mark.slow
def test_segmentation_early_stopping_and_freeze_schedule(ivif: dict, tmp_path: Path, one_thread: None) -> None:
    pytest.importorskip("transformers")
    from fusion_bench.evaluators.segformer import build_segformer

    torch.manual_seed(2)
    torch.save(build_segformer(seg_preset("smoke"), num_classes=6).state_dict(), tmp_path / "pretrained.pt")
    cfg = seg_preset("smoke", epochs=6, freeze_backbone_epochs=2, early_stopping_patience=1, val_fraction=0.25,
                     lr_unfrozen=1e-4, pretrained=str(tmp_path / "pretrained.pt"))  # the freeze needs weights
    r = evaluate_segmentation(ivif["const_train"], ivif["train_masks"], ivif["const_test"], ivif["test_masks"],
                              6, cfg, seed=0, log_dir=tmp_path, progress=False)
    log = (tmp_path / "seg_train_log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,frozen,lr,train_loss,val_miou")
    assert log[1].split(",")[1] == "True" and r["seg_n_train"] == 48
    assert 3 <= r["seg_epochs_run"] <= 6


def test_segmentation_in_float64_trains_a_float64_model_whatever_the_threads(ivif: dict, monkeypatch: pytest.MonkeyPatch
                                                                             ) -> None:
    """`dtype: float64` (the regression suite's downstream entry): SegFormer is built, trained and run in float64,
    and its scores are the same on one thread with oneDNN off as on two threads with oneDNN on (in float64 the
    summation-order differences stay far below what changes a prediction)."""
    pytest.importorskip("transformers")
    from fusion_bench.evaluators import segmentation

    built: list[torch.nn.Module] = []
    real_build = segmentation.build_segformer
    monkeypatch.setattr(segmentation, "build_segformer", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    cfg = seg_preset("smoke", epochs=2, image_size=(32, 40), dtype="float64")
    data = (ivif["max_train"][:16], ivif["train_masks"][:16], ivif["max_test"][:8], ivif["test_masks"][:8], 6)
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    results = []
    try:
        for n, mkldnn in ((1, False), (2, True)):
            torch.set_num_threads(n)
            torch.backends.mkldnn.enabled = mkldnn
            results.append(evaluate_segmentation(*data, cfg, seed=1, progress=False))
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn
    assert all(p.dtype == torch.float64 for model in built for p in model.parameters())
    assert torch.get_default_dtype() == torch.float32  # restored after the run
    assert results[0]["seg_confusion"] == results[1]["seg_confusion"]
    assert results[0]["seg_config"]["dtype"] == "float64"
    with pytest.raises(ValueError, match="dtype 'float16'"):
        seg_preset("smoke", dtype="float16")
