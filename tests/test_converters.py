"""Converters of the authors' released checkpoints (methods/<name>/convert.py) and of ImageNet MiT weights.

Per method: a key-layout fixture, i.e. the authors' key names built in the test from the project's network and the
renames their network files imply (plus their unused modules and buffers), loaded through
`fusion_bench.weights.released.load_released_weights` and compared with the network the tensors came from; where a
channel order differs between the two codebases, a reference written here from the authors' layout checks the
reordering. With the authors' code at hand (FUSION_BENCH_{SEAFUSION,SWINFUSION,AMDANET}_OFFICIAL_DIR pointing at a
checkout), their network itself is built, given random weights, converted and compared (1e-5). CFI: the released
best.pth against the authors' reference outputs on real TNO pairs (../shared/zoo/cfi; skipped when absent). MiT: the
mapping from transformers' SegformerModel (both key generations) against a forward of SegformerModel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fusion_bench.registry import CONVERTERS
from fusion_bench.weights.released import (
    ConversionError,
    load_released_weights,
    methods_with_converters,
    read_state_dict,
)
from fusion_bench.weights.zoo import WeightsError, load_catalogue, sha256_file

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (ROOT / "shared", ROOT.parent / "shared") if (p / "zoo").is_dir()), ROOT / "shared")


@contextlib.contextmanager
def authors_code(root: Path) -> Iterator[None]:
    """Import the authors' modules from `root`, with a stand-in for `timm.models.layers` (DropPath as identity at
    eval, to_2tuple, trunc_normal_) when timm is not installed; everything imported is removed afterwards."""
    before = set(sys.modules)
    shim: dict[str, types.ModuleType] = {}
    if importlib.util.find_spec("timm") is None:
        class DropPath(nn.Module):
            def __init__(self, p: float = 0.0):
                super().__init__()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                assert not self.training, "the stand-in DropPath is for eval only"
                return x

        layers = types.ModuleType("timm.models.layers")
        layers.DropPath, layers.trunc_normal_ = DropPath, nn.init.trunc_normal_
        layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
        shim = {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
                "timm.models.layers": layers}
    sys.modules.update(shim)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            del sys.modules[name]


def _official(env: str, *files: str) -> Path:
    root = os.environ.get(env)
    if not root:
        pytest.skip(f"set {env} to a checkout of the authors' repository")
    missing = [f for f in files if not (Path(root) / f).is_file()]
    if missing:
        pytest.skip(f"{root} lacks {missing}")
    return Path(root)


def _randomise(module: nn.Module, scale: float = 0.05, seed: int = 0) -> None:
    """Perturb every parameter and BatchNorm statistic, so that no tensor keeps a value an init rule would give."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)


def test_every_converter_module_and_catalogue_entry_fit_together():
    for method, module_path in CONVERTERS.items():
        module = importlib.import_module(module_path)
        assert callable(module.convert_released) and callable(module.load_released), method
    released = {e.method for e in load_catalogue().released}
    assert released <= set(CONVERTERS), "a released entry without a converter"
    assert methods_with_converters() == sorted(CONVERTERS)
    with pytest.raises(WeightsError, match="has no converter.*amdanet, cfi"):
        load_released_weights("mean", nn.Linear(1, 1), "x.pth")


# ------------------------------------------------------------------------------------------------
# reading files
# ------------------------------------------------------------------------------------------------


class _Payload:
    def __reduce__(self):  # what a malicious checkpoint would run on unpickling
        return (os.system, ("echo pwned",))


def test_read_state_dict_unwraps_containers_and_refuses_code(tmp_path: Path):
    w = {"a.weight": torch.ones(2), "a.bias": torch.zeros(2)}
    torch.save({"params": {k: v + 1 for k, v in w.items()}, "params_ema": {f"module.{k}": v for k, v in w.items()}},
               tmp_path / "kair.pth")
    assert {k: v.tolist() for k, v in read_state_dict(tmp_path / "kair.pth").items()} == \
        {"a.weight": [1.0, 1.0], "a.bias": [0.0, 0.0]}, "the EMA wins and module. is stripped"
    torch.save({"model": w, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 3, "iteration": 9},
               tmp_path / "engine.pth")
    assert set(read_state_dict(tmp_path / "engine.pth")) == set(w)
    from safetensors.torch import save_file

    save_file(w, str(tmp_path / "w.bin"))  # safetensors content under another suffix
    assert set(read_state_dict(tmp_path / "w.bin")) == set(w)
    torch.save({"weights": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="refused.*weights_only"):
        read_state_dict(tmp_path / "evil.pth")
    torch.save({"method": "cfi", "preset": "paper", "config": {}, "state_dict": w}, tmp_path / "ours.pt")
    with pytest.raises(WeightsError, match="written by fusion-bench"):
        read_state_dict(tmp_path / "ours.pt")
    with pytest.raises(WeightsError, match="not found"):
        read_state_dict(tmp_path / "missing.pth")


# ------------------------------------------------------------------------------------------------
# CFI: the released best.pth
# ------------------------------------------------------------------------------------------------

CFI_DIR = SHARED / "zoo" / "cfi"
TNO = SHARED / "realdata" / "TNO"


def _tno_luminance(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' test.py inputs: infrared as OpenCV grayscale / 255; visible BGR -> YCrCb, Y / 255 (float32)."""
    from PIL import Image

    ir = np.asarray(Image.open(TNO / "ir" / f"{name}.png").convert("RGB"), dtype=np.float32)
    vi = np.asarray(Image.open(TNO / "vi" / f"{name}.png").convert("RGB"), dtype=np.float32)
    # cv2 grayscale (integer, rounded) and the float YCrCb luminance; TNO's files are gray, so both are exact
    ir_y = np.floor(ir[..., 0] * 0.299 + ir[..., 1] * 0.587 + ir[..., 2] * 0.114 + 0.5)
    vi_y = vi[..., 0] * np.float32(0.299) + vi[..., 1] * np.float32(0.587) + vi[..., 2] * np.float32(0.114)
    return (torch.from_numpy(ir_y / 255.0).float()[None, None], torch.from_numpy(vi_y / np.float32(255.0))[None, None])


@pytest.mark.parametrize("name", ["05", "08", pytest.param("01", marks=pytest.mark.slow)])
def test_cfi_best_pth_reproduces_the_authors_outputs_on_tno(name: str):
    if not (CFI_DIR / "best.pth").is_file() or not (CFI_DIR / "reference_TNO" / f"{name}_Y.npy").is_file() \
            or not (TNO / "ir" / f"{name}.png").is_file():
        pytest.skip(f"{CFI_DIR} or {TNO} is absent")
    from fusion_bench.methods.cfi.module import CFIFusion

    module = CFIFusion(dim=32, levels=3, tokens=8).eval()
    digest = load_released_weights("cfi", module, CFI_DIR / "best.pth")
    assert digest == next(e.sha256 for e in load_catalogue().released if e.name == "cfi")
    ir, vi = _tno_luminance(name)
    with torch.no_grad():
        fused = module.net(ir, vi)[0].clamp(0, 1)[0, 0].numpy()
    reference = np.load(CFI_DIR / "reference_TNO" / f"{name}_Y.npy")
    assert fused.shape == reference.shape
    assert np.abs(fused - reference).max() <= 1e-5


# ------------------------------------------------------------------------------------------------
# SeAFusion
# ------------------------------------------------------------------------------------------------

_SEA_PARTS = {"dense1.0": "dense.conv1.conv", "dense2.0": "dense.conv2.conv", "squeeze": "convdown.conv",
              "sobel.conv_x": "sobelconv.convx", "sobel.conv_y": "sobelconv.convy", "gradient_proj": "convup.conv"}
_SEA_DECODER = {"decoder.0.0": "decode4.conv", "decoder.1.0": "decode3.conv", "decoder.2.0": "decode2.conv",
                "decoder.3": "decode1.conv"}


def seafusion_authors_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The authors' FusionNet names for `net`'s tensors, plus the BatchNorms their ConvBn* layers build unused."""
    streams = {"encoder_vis": "vis", "encoder_ir": "inf"}
    out = {}
    for key, value in net.state_dict().items():
        head, rest = key.split(".", 1)
        if head in streams and rest.startswith("stem.0."):
            name = f"{streams[head]}_conv.conv.{rest.split('.')[-1]}"
        elif head in streams:
            _, block, inner = rest.split(".", 2)
            part, leaf = inner.rsplit(".", 1)
            name = f"{streams[head]}_rgbd{int(block) + 1}.{_SEA_PARTS[part]}.{leaf}"
        else:
            part, leaf = key.rsplit(".", 1)
            name = f"{_SEA_DECODER[part]}.{leaf}"
        out[name] = value.clone()
    for layer in ("decode4", "decode3", "decode2", "decode1"):
        channels = out[f"{layer}.conv.bias"].shape[0]
        out.update({f"{layer}.bn.weight": torch.ones(channels), f"{layer}.bn.bias": torch.zeros(channels),
                    f"{layer}.bn.running_mean": torch.zeros(channels), f"{layer}.bn.running_var": torch.ones(channels),
                    f"{layer}.bn.num_batches_tracked": torch.tensor(0)})
    return out


def test_seafusion_key_layout_round_trip(tmp_path: Path):
    from fusion_bench.methods.seafusion.model import SeAFusionNet
    from fusion_bench.methods.seafusion.module import SeAFusionContent

    torch.manual_seed(0)
    source = SeAFusionNet().eval()
    _randomise(source)
    authors = seafusion_authors_state(source)
    assert {"vis_conv.conv.weight", "inf_rgbd2.sobelconv.convy.weight", "vis_rgbd1.dense.conv2.conv.bias",
            "decode1.conv.weight", "decode4.bn.running_var"} <= set(authors)
    params = sum(v.numel() for k, v in authors.items() if not k.endswith(("running_mean", "running_var", "tracked")))
    assert params == 166_883, "the authors' FusionNet parameter count (README: 166,657 + 226 unused BN)"
    torch.save({f"module.{k}": v for k, v in authors.items()}, tmp_path / "fusionmodel_final.pth")
    module = SeAFusionContent().eval()
    digest = load_released_weights("seafusion_content", module, tmp_path / "fusionmodel_final.pth")
    assert digest == sha256_file(tmp_path / "fusionmodel_final.pth")
    x1, x2 = torch.rand(2, 1, 24, 40), torch.rand(2, 1, 24, 40)
    with torch.no_grad():
        assert torch.equal(module.net(x1, x2), source(x1, x2))
    authors["vis_rgbd3.convup.conv.weight"] = torch.zeros(1)
    torch.save(authors, tmp_path / "extra.pth")
    with pytest.raises(ConversionError, match=r"1 unexpected, e\.g\. \['encoder_vis\.blocks\.2\."):
        load_released_weights("seafusion", SeAFusionContent(), tmp_path / "extra.pth")
    with pytest.raises(ConversionError, match="does not fit"):  # another width
        load_released_weights("seafusion", SeAFusionContent(channels=(8, 16, 24)), tmp_path / "fusionmodel_final.pth")


def test_seafusion_against_the_authors_network():
    root = _official("FUSION_BENCH_SEAFUSION_OFFICIAL_DIR", "FusionNet.py")
    from fusion_bench.methods.seafusion.convert import convert_released
    from fusion_bench.methods.seafusion.model import SeAFusionNet

    with authors_code(root):
        authors = importlib.import_module("FusionNet").FusionNet(output=1).eval()
    _randomise(authors)
    ours = SeAFusionNet().eval()
    ours.load_state_dict(convert_released({f"module.{k}": v for k, v in authors.state_dict().items()}))
    for h, w in ((32, 32), (37, 53)):
        ir, vis = torch.rand(2, 1, h, w), torch.rand(2, 1, h, w)
        with torch.no_grad():
            assert (authors(vis, ir) - ours(ir, vis)).abs().max() <= 1e-5  # theirs: (visible, infrared)


# ------------------------------------------------------------------------------------------------
# SwinFusion
# ------------------------------------------------------------------------------------------------

SWIN_SMALL = {"embed_dim": 8, "num_heads": 2, "window_size": 4, "mlp_ratio": 2.0, "extraction_depth": 2,
              "fusion_depths": (2, 2), "reconstruction_depth": 2}


def _swin_leaf(rest: str) -> str:
    rest = rest.replace("mlp.0.", "mlp.fc1.").replace("mlp.2.", "mlp.fc2.")
    for ours, theirs in (("_a.", "_A."), ("_b.", "_B.")):
        for part in ("norm1", "norm2", "attn"):
            rest = rest.replace(f"{part}{ours}", f"{part}{theirs}")
        rest = rest.replace(f"mlp{ours}0.", f"mlp{theirs}fc1.").replace(f"mlp{ours}2.", f"mlp{theirs}fc2.")
    return rest


def swinfusion_authors_state(net: nn.Module, window: int, size: int) -> dict[str, torch.Tensor]:
    """The authors' network_swinfusion1 names for `net`'s tensors (KAIR `save_network` keeps buffers), plus their
    unused B shallow convolutions, every attention's relative_position_index and the shifted blocks' attn_mask for
    a `size` x `size` training resolution."""
    fixed = {"shallow.0": "conv_first1_A", "shallow.2": "conv_first2_A", "token_norm": "patch_embed.norm",
             "norm_extraction_a": "norm_Ex_A", "norm_extraction_b": "norm_Ex_B", "norm_fusion_a": "norm_Fusion_A",
             "norm_fusion_b": "norm_Fusion_B", "fusion_conv.0": "conv_after_body_Fusion",
             "norm_reconstruction": "norm_Re", "head.0": "conv_last1", "head.2": "conv_last2", "head.4": "conv_last3"}
    out = {}
    blocks = set()
    for key, value in net.state_dict().items():
        module, leaf = key.rsplit(".", 1)
        if module in fixed:
            out[f"{fixed[module]}.{leaf}"] = value.clone()
            continue
        if m := re.fullmatch(r"extraction_(a|b)\.(\d+)\.(.+)", key):
            head = f"layers_Ex_{m[1].upper()}.0.residual_group.blocks.{m[2]}"
        elif m := re.fullmatch(r"reconstruction\.(\d+)\.(.+)", key):
            head, m = f"layers_Re.0.residual_group.blocks.{m[1]}", (None, None, None, m[2])
        elif m := re.fullmatch(r"fusion\.(\d+)\.intra_(a|b)\.(\d+)\.(.+)", key):
            head, m = f"layers_Fusion.{m[1]}.residual_group_{m[2].upper()}.blocks.{m[3]}", (None, None, None, m[4])
        elif m := re.fullmatch(r"fusion\.(\d+)\.inter\.(\d+)\.(.+)", key):
            head, m = f"layers_Fusion.{m[1]}.residual_group.blocks.{m[2]}", (None, None, None, m[3])
        else:
            raise AssertionError(f"fixture: no rule for {key}")
        out[f"{head}.{_swin_leaf(m[3])}"] = value.clone()
        blocks.add(head)
    half = out["conv_first1_A.weight"].shape[0]
    out.update({"conv_first1_B.weight": torch.randn(half, 1, 3, 3), "conv_first1_B.bias": torch.randn(half),
                "conv_first2_B.weight": torch.randn(half, half, 3, 3), "conv_first2_B.bias": torch.randn(half)})
    n = window * window
    windows = (size // window) ** 2
    for head in blocks:
        cross = head.startswith("layers_Fusion.") and ".residual_group.blocks." in head
        attentions = ("attn_A", "attn_B") if cross else ("attn",)
        for attn in attentions:
            out[f"{head}.{attn}.relative_position_index"] = torch.randint(0, (2 * window - 1) ** 2, (n, n))
        if int(head.rsplit(".", 1)[1]) % 2:
            out[f"{head}.attn_mask"] = torch.zeros(windows, n, n)
    return out


def test_swinfusion_key_layout_round_trip_and_parameter_count(tmp_path: Path):
    from fusion_bench.methods.swinfusion.model import SwinFusionNet
    from fusion_bench.methods.swinfusion.module import SwinFusion

    full = swinfusion_authors_state(SwinFusionNet(), window=8, size=128)
    params = sum(v.numel() for k, v in full.items() if not k.endswith(("relative_position_index", "attn_mask")))
    assert params == 973_681, "the authors' VIF network (README: 965,251 + 8,430 in the unused B convolutions)"
    assert {"layers_Ex_A.0.residual_group.blocks.3.attn_mask", "layers_Fusion.1.residual_group.blocks.1.mlp_B.fc2.bias",
            "layers_Fusion.0.residual_group_A.blocks.0.attn.relative_position_bias_table", "norm_Re.weight",
            "conv_last3.bias", "patch_embed.norm.weight"} <= set(full)

    torch.manual_seed(1)
    source = SwinFusionNet(**SWIN_SMALL).eval()
    _randomise(source)
    torch.save(swinfusion_authors_state(source, window=4, size=16), tmp_path / "10000_E.pth")
    module = SwinFusion(**SWIN_SMALL, ema_decay=0.0).eval()
    load_released_weights("swinfusion", module, tmp_path / "10000_E.pth", task="ivif")
    x1, x2 = torch.rand(1, 1, 16, 24), torch.rand(1, 1, 16, 24)
    with torch.no_grad():
        assert torch.equal(module.net(x1, x2, clamp=False), source(x1, x2, clamp=False))
        # medical: the authors' stream A is MRI = our x2; the swapped conversion must be the same network with the
        # inputs exchanged (this fails without the merging convolution's channel swap)
        medical = SwinFusion(**SWIN_SMALL, ema_decay=0.0).eval()
        load_released_weights("swinfusion", medical, tmp_path / "10000_E.pth", task="medical")
        assert (medical.net(x2, x1, clamp=False) - source(x1, x2, clamp=False)).abs().max() <= 1e-6
    with pytest.raises(ConversionError, match="of another shape"):
        load_released_weights("swinfusion", SwinFusion(**{**SWIN_SMALL, "window_size": 2}), tmp_path / "10000_E.pth")


def test_swinfusion_against_the_authors_network():
    root = _official("FUSION_BENCH_SWINFUSION_OFFICIAL_DIR", "models/network_swinfusion1.py")
    from fusion_bench.methods.swinfusion.convert import convert_released
    from fusion_bench.methods.swinfusion.model import SwinFusionNet

    with authors_code(root):
        net_cls = importlib.import_module("models.network_swinfusion1").SwinFusion
        authors = net_cls(img_size=16, patch_size=1, in_chans=1, embed_dim=8, Ex_depths=[2], Fusion_depths=[2, 2],
                          Re_depths=[2], Ex_num_heads=[2], Fusion_num_heads=[2, 2], Re_num_heads=[2], window_size=4,
                          mlp_ratio=2.0, upscale=1, img_range=1.0, upsampler="", resi_connection="1conv").eval()
    _randomise(authors, scale=0.1)
    for swap in (False, True):
        ours = SwinFusionNet(**SWIN_SMALL).eval()
        ours.load_state_dict(convert_released(authors.state_dict(), swap_streams=swap))
        for h, w in ((16, 16), (24, 32)):  # the stored attn_mask size and another one
            x1, x2 = torch.rand(2, 1, h, w), torch.rand(2, 1, h, w)
            with torch.no_grad():
                theirs = authors(x2, x1) if swap else authors(x1, x2)
                assert (theirs - ours(x1, x2, clamp=False)).abs().max() <= 1e-5
    released = root / "Model/Infrared_Visible_Fusion/Infrared_Visible_Fusion/models/10000_E.pth"
    if released.is_file() and released.stat().st_size > 1000:  # the real file (not a missing blob / LFS pointer)
        with authors_code(root):
            authors = importlib.import_module("models.network_swinfusion1").SwinFusion(
                upscale=1, in_chans=1, img_size=128, window_size=8, img_range=1.0, embed_dim=60, mlp_ratio=2,
                upsampler=None, resi_connection="1conv").eval()
        authors.load_state_dict(torch.load(released, map_location="cpu", weights_only=True), strict=True)
        ours = SwinFusionNet().eval()
        ours.load_state_dict(convert_released(read_state_dict(released)))
        x1, x2 = torch.rand(1, 1, 64, 80), torch.rand(1, 1, 64, 80)
        with torch.no_grad():
            assert (authors(x1, x2) - ours(x1, x2, clamp=False)).abs().max() <= 1e-5


# ------------------------------------------------------------------------------------------------
# AMDANet
# ------------------------------------------------------------------------------------------------

AMDA_TINY = {"encoder": None, "hidden_sizes": [16, 32, 48, 64], "depths": [1, 1, 1, 1], "heads": [1, 2, 2, 4],
             "drop_path_rate": 0.0, "decoder_dim": 16, "fusion_width": 4, "sci_gate": "code", "sci_swap_streams": True,
             "learn_lambda": False, "local_mode": "code", "global_mode": "code", "head_style": "code",
             "drop_path_rule": "code", "pretrained": None}
_GLOBAL = {"enhance_vis": "SE_x1", "enhance_ir": "SE_x2", "vis_to_ir": "CM_x1toX2", "ir_to_mid": "CM_x2toX1"}


def amdanet_authors_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The authors' model.py names (backbone / decode_head / aux_head) for `net`'s tensors, in their channel orders:
    their SCI MLP reads cat(rgb, x), their fusion head concatenates [rgb_1, ir_1, ..., rgb image, ir image]."""
    out = {}
    for key, value in net.state_dict().items():
        value = value.clone()
        p = key.split(".")
        if p[0] in ("encoder_vis", "encoder_ir"):
            extra, stage = ("" if p[0] == "encoder_vis" else "extra_"), int(p[1]) + 1
            if p[2] == "patch_embed":
                name = f"backbone.{extra}patch_embed{stage}.{'.'.join(p[3:])}"
            elif p[2] == "norm":
                name = f"backbone.{extra}norm{stage}.{p[3]}"
            else:
                rest = ".".join(p[4:]).replace("attn.sr_conv.", "attn.sr.").replace("attn.sr_norm.", "attn.norm.")
                name = f"backbone.{extra}block{stage}.{p[3]}.{rest.replace('mlp.dwconv.', 'mlp.dwconv.dwconv.')}"
        elif p[0] == "sci":
            name = f"backbone.sci_{int(p[1]) + 1}." + ("lambda_param" if p[2] == "lambda_" else ".".join(p[2:]))
            if name.endswith("mlp.0.weight"):
                half = value.shape[1] // 2
                value = torch.cat([value[:, half:], value[:, :half]], 1)  # ours (ir, vis) -> theirs (rgb, x)
        elif p[0] == "local":
            part = {"gate": "gate", "channel": "fuse_sc.cha.mlp", "spatial": "fuse_sc.sap.mlp"}[p[2]]
            name = f"backbone.LEs.{p[1]}.{part}.{'.'.join(p[3:])}"
        elif p[0] == "globals" and p[2] == "out":
            name = f"backbone.GEs.{p[1]}.proj.{p[3]}"
        elif p[0] == "globals":
            inner = {"q": "q1", "kv": "kv2"} if p[2] in ("vis_to_ir", "ir_to_mid") else {}
            inner |= {"sr_conv": "sr", "sr_norm": "norm"}
            name = f"backbone.GEs.{p[1]}.{_GLOBAL[p[2]]}.{inner.get(p[3], p[3])}.{p[4]}"
        elif p[0] == "seg_head" and p[1] == "embed":
            name = f"decode_head.linear_c{int(p[2]) + 1}.proj.{p[3]}"
        elif p[0] == "seg_head":
            name = f"decode_head.{'linear_pred' if p[1] == 'classifier' else 'linear_fuse.' + p[2]}.{p[-1]}"
        elif p[1] == "points":
            stage, which = divmod(int(p[2]), 2)
            name = f"aux_head.PointConv_{stage + 1}_{'rgb' if which else 'ir'}.pconv.{'.'.join(p[3:])}"
        else:
            name = f"aux_head.CNN_fuse.{'.'.join(p[2:])}"
            if name.endswith("CNN_fuse.0.weight"):
                width = net.fusion_head.points[0][0].out_channels
                stages = len(net.fusion_head.points) // 2
                blocks = [value[:, i * width:(i + 1) * width] for i in range(2 * stages)]
                swapped = [b for s in range(stages) for b in (blocks[2 * s + 1], blocks[2 * s])]
                value = torch.cat([*swapped, value[:, 2 * stages * width:]], 1)
        out[name] = value
    return out


def _amdanet_tiny(**overrides):
    from fusion_bench.methods.amdanet.module import AMDANet

    return AMDANet(num_classes=5, **{**AMDA_TINY, **overrides})


def test_amdanet_key_layout_round_trip(tmp_path: Path):
    torch.manual_seed(2)
    source = _amdanet_tiny().eval()
    _randomise(source.net, scale=0.02)
    authors = amdanet_authors_state(source.net)
    assert {"backbone.extra_block1.0.attn.sr.weight", "backbone.block4.0.mlp.dwconv.dwconv.bias",
            "backbone.sci_2.lambda_param", "backbone.LEs.3.fuse_sc.sap.mlp.2.weight",
            "backbone.GEs.0.CM_x1toX2.q1.weight", "backbone.GEs.2.SE_x2.sr.weight", "decode_head.linear_c4.proj.weight",
            "decode_head.linear_fuse.1.running_var", "aux_head.PointConv_1_rgb.pconv.0.weight",
            "aux_head.CNN_fuse.3.bias"} <= set(authors)
    checkpoint = {"model": authors, "optimizer": {"state": {0: {"step": torch.tensor(5.0)}}, "param_groups": []},
                  "epoch": 12, "iteration": 40}
    torch.save(checkpoint, tmp_path / "best12.pth")
    module = _amdanet_tiny().eval()
    load_released_weights("amdanet", module, tmp_path / "best12.pth")
    ir, vis = torch.rand(2, 1, 64, 96), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(module.fuse(ir, vis), source.fuse(ir, vis))
        assert torch.equal(module.segment(ir, vis), source.segment(ir, vis))

    # the two channel orders, against references written from the authors' layout
    net = module.net
    c = 16
    t_rgb, t_x = torch.randn(2, 7, c), torch.randn(2, 7, c)
    w1, b1 = authors["backbone.sci_1.mlp.0.weight"], authors["backbone.sci_1.mlp.0.bias"]
    w2, b2 = authors["backbone.sci_1.mlp.2.weight"], authors["backbone.sci_1.mlp.2.bias"]
    theirs = torch.sigmoid(F.linear(F.relu(F.linear(torch.cat([t_rgb, t_x], -1), w1, b1)), w2, b2))
    with torch.no_grad():
        assert torch.allclose(net.sci[0](t_x, t_rgb)[2]["mask"], theirs, atol=1e-6)  # ours: (ir, vis)
    rgb_img, ir_img = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    feats = [(torch.randn(1, d, 32 // s, 32 // s), torch.randn(1, d, 32 // s, 32 // s))
             for d, s in zip((16, 32, 48, 64), (4, 8, 16, 32))]  # (ir, vis) per stage

    def point(name: str, x: torch.Tensor) -> torch.Tensor:
        a = {k.rsplit(".", 1)[1]: authors[k] for k in authors if k.startswith(f"aux_head.{name}.pconv.0.")}
        bn = {k.rsplit(".", 1)[1]: authors[k] for k in authors if k.startswith(f"aux_head.{name}.pconv.1.")}
        y = F.batch_norm(F.conv2d(x, a["weight"], a["bias"]), bn["running_mean"], bn["running_var"], bn["weight"],
                         bn["bias"], False, 0.0, 0.01)
        return F.interpolate(F.relu(y), size=(32, 32), mode="bilinear", align_corners=False)

    maps = [m for s, (f_ir, f_vis) in enumerate(feats, 1)
            for m in (point(f"PointConv_{s}_rgb", f_vis), point(f"PointConv_{s}_ir", f_ir))]
    x = torch.cat([*maps, rgb_img, ir_img], 1)
    x = F.conv2d(x, authors["aux_head.CNN_fuse.0.weight"], authors["aux_head.CNN_fuse.0.bias"], padding=1)
    bn = {k.rsplit(".", 1)[1]: v for k, v in authors.items() if k.startswith("aux_head.CNN_fuse.1.")}
    x = F.relu(F.batch_norm(x, bn["running_mean"], bn["running_var"], bn["weight"], bn["bias"], False, 0.0, 0.01))
    theirs = torch.sigmoid(F.conv2d(x, authors["aux_head.CNN_fuse.3.weight"], authors["aux_head.CNN_fuse.3.bias"]))
    with torch.no_grad():
        assert torch.allclose(net.fusion_head(feats, ir_img, rgb_img), theirs, atol=1e-5)

    with pytest.raises(ConversionError, match="paper preset.*local_mode='paper'"):
        load_released_weights("amdanet", _amdanet_tiny(local_mode="paper"), tmp_path / "best12.pth")
    from fusion_bench.methods.amdanet.module import AMDANet

    with pytest.raises(ConversionError, match="segments 5 classes and this run's dataset has 9"):
        load_released_weights("amdanet", AMDANet(num_classes=9, **AMDA_TINY), tmp_path / "best12.pth")


def test_amdanet_against_the_authors_network():
    root = _official("FUSION_BENCH_AMDANET_OFFICIAL_DIR", "models/backbone/Segformer.py", "models/model.py")
    import functools

    from fusion_bench.methods.amdanet.convert import convert_released
    from fusion_bench.methods.amdanet.model import AMDANetModel, MiTConfig

    dims = [64, 128, 320, 512]  # the authors' SCI widths are fixed to these
    with authors_code(root):
        backbone = importlib.import_module("models.backbone.Segformer")
        seg = importlib.import_module("models.decoder.Seg_Decoder")
        fuse = importlib.import_module("models.decoder.Fuse_Decoder")
        init_weight = importlib.import_module("models.model").init_weight

        class Authors(nn.Module):  # their AMDANet's three parts under their attribute names, one block per stage
            def __init__(self):
                super().__init__()
                self.backbone = backbone.RGBXTransformer(
                    embed_dims=dims, num_heads=[1, 2, 5, 8], mlp_ratios=[4] * 4, qkv_bias=True,
                    norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1],
                    drop_path_rate=0.1)
                self.decode_head = seg.seg_decoder(in_channels=dims, num_classes=5, norm_layer=nn.BatchNorm2d,
                                                   embed_dim=32)
                self.aux_head = fuse.fuse_decoder(in_channels=dims)
                for head in (self.decode_head, self.aux_head):  # their init_weights (bn_eps 0.01, one GPU)
                    init_weight(head, nn.init.kaiming_normal_, nn.BatchNorm2d, 0.01, 0.01, mode="fan_in",
                                nonlinearity="relu")

        authors = Authors()
    _randomise(authors, scale=0.02)
    authors.eval()
    ours = AMDANetModel(5, MiTConfig(hidden_sizes=tuple(dims), depths=(1, 1, 1, 1), heads=(1, 2, 5, 8)),
                        decoder_dim=32, fusion_width=16, **{k: AMDA_TINY[k] for k in (
                            "sci_gate", "sci_swap_streams", "learn_lambda", "local_mode", "global_mode", "head_style",
                            "drop_path_rule")}).eval()
    ours.load_state_dict(convert_released(authors.state_dict()))
    for h, w in ((64, 64), (96, 128)):
        vis, ir = torch.rand(2, 3, h, w), torch.rand(2, 1, h, w).expand(-1, 3, -1, -1).contiguous()
        with torch.no_grad():
            vision, semantic = authors.backbone(vis, ir)
            seg_theirs = F.interpolate(authors.decode_head(semantic), size=(h, w), mode="bilinear",
                                       align_corners=False)
            fused_theirs = authors.aux_head(vision, [vis, ir])
            feats = ours.encode(ir, vis)
            assert (ours.fuse(feats.vision, ir, vis) - fused_theirs).abs().max() <= 1e-5
            assert (ours.segment(feats.semantic, (h, w)) - seg_theirs).abs().max() <= 1e-5


# ------------------------------------------------------------------------------------------------
# ImageNet MiT weights: transformers' SegformerModel -> the project's MiT stream
# ------------------------------------------------------------------------------------------------

MIT_TINY = {"hidden_sizes": (16, 32, 48, 64), "depths": (1, 2, 1, 1), "heads": (1, 2, 2, 4), "sr_ratios": (8, 4, 2, 1)}


def _segformer_config(hidden_sizes, depths, heads, sr_ratios):
    from transformers import SegformerConfig

    return SegformerConfig(num_channels=3, num_encoder_blocks=4, depths=list(depths), sr_ratios=list(sr_ratios),
                           hidden_sizes=list(hidden_sizes), patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2],
                           num_attention_heads=list(heads), mlp_ratios=[4, 4, 4, 4], drop_path_rate=0.0)


def test_mit_b4_key_mapping_covers_the_encoder():
    """transformers' MiT-B4 (nvidia/mit-b4's architecture) maps onto the project's B4 stream key for key and shape
    for shape (meta tensors: no weights, no memory)."""
    from transformers import SegformerForImageClassification

    from fusion_bench.evaluators.segformer import MIT_HEADS, MIT_VARIANTS
    from fusion_bench.methods.amdanet.model import MiTConfig, build_mit_stages
    from fusion_bench.methods.amdanet.pretrained import convert_mit_state_dict
    from fusion_bench.weights.segformer import from_release, to_release

    b4 = MIT_VARIANTS["b4"]
    with torch.device("meta"):
        hf = SegformerForImageClassification(_segformer_config(b4["hidden_sizes"], b4["depths"], MIT_HEADS,
                                                                (8, 4, 2, 1)))
        stream = build_mit_stages(MiTConfig.build("b4"))
    hf_state = {k: v for k, v in hf.state_dict().items()}
    ours = stream.state_dict()
    converted = convert_mit_state_dict(to_release(hf_state))
    assert set(converted) == set(ours) and all(converted[k].shape == ours[k].shape for k in ours)
    # 4 tensors per patch embedding, 2 per stage norm, 20 per block (16 in the last stage: no spatial reduction)
    assert len(converted) == 16 + 8 + 20 * (3 + 8 + 27) + 16 * 3
    # the hub's files carry transformers 4 names: transformers' own renaming table maps ours onto its model
    v4 = from_release(to_release(hf_state), "v4")
    assert {"encoder.block.2.26.attention.self.key.weight", "encoder.layer_norm.3.bias",
            "encoder.patch_embeddings.0.layer_norm.weight", "encoder.block.0.0.mlp.dense1.weight"} <= set(v4)
    try:
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping

        renames = get_checkpoint_conversion_mapping("SegformerModel")
    except (ImportError, AttributeError, KeyError):
        renames = None
    if renames:
        def rename(key: str) -> str:
            for r in renames:
                for src, tgt in zip(r.source_patterns, r.target_patterns, strict=True):
                    key = re.sub(src, tgt, key)
            return key

        model_keys = {k.removeprefix("segformer.") for k in hf_state if k.startswith("segformer.")}
        assert {rename(k) for k in v4} == model_keys


def test_mit_forward_matches_segformer_model():
    """A random tiny SegformerModel, converted and loaded strictly into the project's MiT stream, gives the same four
    stage outputs (float64; the blocks' LayerNorm eps set to the original MiT's 1e-6, which the project uses and
    transformers' port replaces by 1e-5)."""
    from transformers import SegformerModel

    from fusion_bench.methods.amdanet.model import MiTConfig, build_mit_stages
    from fusion_bench.methods.amdanet.pretrained import convert_mit_state_dict
    from fusion_bench.weights.segformer import from_release, to_release

    torch.manual_seed(4)
    hf = SegformerModel(_segformer_config(**MIT_TINY)).double().eval()
    _randomise(hf, scale=0.1)
    for name, m in hf.named_modules():
        if isinstance(m, nn.LayerNorm) and ("layernorm_" in name or re.fullmatch(r"stages\.\d\.layer_norm", name)):
            m.eps = 1e-6
    stream = build_mit_stages(MiTConfig.build(None, **MIT_TINY, drop_path_rate=0.0)).double().eval()
    for layout in ("v5", "v4"):
        state = hf.state_dict() if layout == "v5" else from_release(to_release(hf.state_dict()), "v4")
        stream.load_state_dict(convert_mit_state_dict(to_release(state)), strict=True)
        x = torch.rand(2, 3, 64, 96, dtype=torch.float64)
        with torch.no_grad():
            expected = hf(pixel_values=x, output_hidden_states=True).hidden_states
            f = x
            for stage, want in zip(stream, expected, strict=True):
                tokens, h, w = stage.patch_embed(f)
                f = stage.transform(tokens, h, w)
                assert f.shape == want.shape and (f - want).abs().max() <= 1e-10


def test_mit_weights_from_hub_files_load_into_both_amdanet_streams(tmp_path: Path):
    """A transformers-4 named safetensors file (the hub's layout, with the classifier) and a from_pretrained folder
    load into both streams of AMDANet's encoder."""
    from safetensors.torch import save_file
    from transformers import SegformerForImageClassification

    from fusion_bench.methods.amdanet.pretrained import load_mit_weights
    from fusion_bench.weights.segformer import from_release, to_release

    torch.manual_seed(5)
    hf = SegformerForImageClassification(_segformer_config(**MIT_TINY))
    _randomise(hf)
    v4 = {f"segformer.{k}": v.contiguous() for k, v in from_release(to_release(hf.state_dict()), "v4").items()}
    v4["classifier.weight"] = torch.zeros(10, 64)
    save_file(v4, str(tmp_path / "model.safetensors"))
    tiny = {**AMDA_TINY, "hidden_sizes": list(MIT_TINY["hidden_sizes"]), "depths": list(MIT_TINY["depths"]),
            "heads": list(MIT_TINY["heads"])}
    for source in (tmp_path / "model.safetensors", tmp_path):
        module = _amdanet_tiny(**tiny)
        assert load_mit_weights(module.net, source) == len(module.net.encoder_ir.state_dict())
        expected = hf.segformer.stages[2].blocks[0].attention.k_proj.weight
        for stream in (module.net.encoder_ir, module.net.encoder_vis):
            assert torch.equal(stream[2].blocks[0].attn.kv.weight[:48], expected)
    module = _amdanet_tiny(**{**tiny, "pretrained": str(tmp_path / "model.safetensors")})
    assert module.pretrained_weights.sha256 == sha256_file(tmp_path / "model.safetensors")
    assert module.pretrained_weights.source == "file"
