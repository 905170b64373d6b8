"""Score folders of fused images against their sources (the engine of ``fusion-bench metrics``)."""

from __future__ import annotations

import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from fusion_bench.data.io import DEEP_MODES, UNREADABLE_IMAGE_ERRORS, open_image, read_array
from fusion_bench.errors import ImageReadError, MetricsInputError
from fusion_bench.metrics.dialect_base import Dialect
from fusion_bench.metrics.dialects import get_dialect

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_BATCH_PIXELS = 1 << 22
"""Pixels per image scored in one batch at most (about 4.2 M: 8 images of 640x480 and 1 of 12 MP): the metrics keep
tens of float64 copies of a batch, so the batch shrinks with the image size (never below one image)."""
PROBE_SIZE = 64  # images up to this side are checked against the dialect's window sizes before scoring


def batch_limit(height: int, width: int, batch_size: int) -> int:
    """Images of HxW per batch: `batch_size`, lowered so that a batch holds at most MAX_BATCH_PIXELS (at least 1)."""
    return max(1, min(batch_size, MAX_BATCH_PIXELS // max(1, height * width)))


STEM = "{stem}"


def name_pattern(pattern: str, option: str = "--fused-pattern") -> re.Pattern[str]:
    """A file-name pattern such as ``{stem}_fused.png`` or ``{stem}_A.*`` as a regex whose group ``stem`` is the pair
    key (``*``: any characters; the key is the longest that fits, so ``{stem}.*`` keys ``a.b.png`` as ``a.b``, like
    a file's stem). MetricsInputError naming `option` for a pattern without exactly one ``{stem}`` or with a folder."""
    if pattern.count(STEM) != 1 or "/" in pattern or "\\" in pattern:
        raise MetricsInputError(f"{option} {pattern!r}: expected a file name with {STEM} once and no folder, e.g. "
                                "'{stem}_fused.png' or '{stem}_A.*'")
    head, tail = pattern.split(STEM)
    def part(text: str) -> str:
        return ".*?".join(re.escape(piece) for piece in text.split("*"))
    return re.compile(f"{part(head)}(?P<stem>.+){part(tail)}")


def images_by_key(folder: Path, role: str, pattern: str | None = None, option: str = "--fused-pattern"
                  ) -> dict[str, Path]:
    """The images of `folder` by pair key: the file stem, or with `pattern` (see `name_pattern`) the part of the name
    that ``{stem}`` stands for (files the pattern does not match are not images of this folder). Two files with one
    key, or no image at all, are a MetricsInputError naming the folder."""
    if not folder.is_dir():
        raise MetricsInputError(f"{role} folder {folder} does not exist or is not a directory")
    regex = name_pattern(pattern, option) if pattern is not None else None
    out: dict[str, Path] = {}
    dupes: list[str] = []
    seen = 0
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
            seen += 1
            if regex is None:
                key = p.stem
            else:
                match = regex.fullmatch(p.name)
                if match is None:
                    continue
                key = match.group("stem")
            if key in out:
                dupes.append(f"{out[key].name} / {p.name}")
            out[key] = p
    if dupes:
        raise MetricsInputError(f"{role} folder {folder} has several images with the same key: {', '.join(dupes)}"
                                + (f" (pattern {pattern!r})" if pattern else " (pairing is by file stem)"))
    if not out:
        what = f"no image matches {option} {pattern!r} ({seen} other image(s) there)" if seen and pattern else \
            f"contains no images ({', '.join(IMAGE_EXTENSIONS)})"
        raise MetricsInputError(f"{role} folder {folder} {what}")
    return out


def _shown(names: Sequence[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def pair_folders(a_dir: str | Path, b_dir: str | Path, fused_dir: str | Path,
                 patterns: Mapping[str, str | None] | None = None,
                 allow_subset: bool = False) -> list[tuple[str, Path, Path, Path]]:
    """Match files by key (the stem, or the part a pattern's ``{stem}`` stands for): fused ``x.png`` pairs with
    ``a_dir/x.*`` and ``b_dir/x.*``. `patterns`: role (``a``, ``b``, ``fused``) -> file-name pattern, e.g.
    ``{"fused": "{stem}_fused.png", "a": "{stem}_A.*"}``.

    Raises MetricsInputError naming the files when any image has no partner in one of the three folders; with
    `allow_subset`, source pairs without a fused image are left out instead (the sources must still pair).
    """
    patterns = dict(patterns or {})
    a = images_by_key(Path(a_dir), "source a", patterns.get("a"), "--a-pattern")
    b = images_by_key(Path(b_dir), "source b", patterns.get("b"), "--b-pattern")
    f = images_by_key(Path(fused_dir), "fused", patterns.get("fused"), "--fused-pattern")
    if allow_subset:  # a complete source pair without a fused image is left out
        both = set(a) & set(b) - set(f)
        a = {k: p for k, p in a.items() if k not in both}
        b = {k: p for k, p in b.items() if k not in both}
    problems = []
    for role, d, others in (("fused", f, (a, b)), ("source a", a, (b, f)), ("source b", b, (a, f))):
        lonely = [p.name for s, p in d.items() if any(s not in o for o in others)]
        if lonely:
            problems.append(f"{role} images without a partner in every folder: {_shown(lonely)}")
    if problems:
        hint = "" if allow_subset else "; --allow-subset scores the pairs that have a fused image"
        raise MetricsInputError("unpaired inputs (pairing is by file stem, or by the --*-pattern options"
                                f"{hint}):\n  " + "\n  ".join(problems))
    return [(s, a[s], b[s], f[s]) for s in sorted(f)]


def image_header(path: Path) -> tuple[int, int, int]:
    """(H, W, channels as `read_metric_image` decodes them) without decoding the pixels (decompression bombs refused);
    MetricsInputError naming the file."""
    try:
        with open_image(path) as img:
            w, h = img.size
            mode = img.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise MetricsInputError(f"cannot read image {path}: refused as a possible decompression bomb ({err})") from err
    except UNREADABLE_IMAGE_ERRORS as err:
        raise MetricsInputError(f"cannot read image {path}: {err}") from err
    return h, w, 1 if mode in ("L", "1", "LA", *DEEP_MODES) else 3



def read_metric_image(path: Path) -> torch.Tensor:
    """Decode an image to a float64 CxHxW tensor in [0, 1] (C = 1 for gray files, 3 otherwise).

    8-bit files give k/255; 16-bit and float files follow the depth policy of fusion_bench.data.io (the same
    values `bench` scores); the metrics then work on 8-bit levels round(255 x).
    """
    channels = image_header(path)[2]
    try:
        arr = read_array(path, "L" if channels == 1 else "RGB")
    except ImageReadError as err:
        raise MetricsInputError(str(err)) from err
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr.transpose(2, 0, 1).copy()).to(torch.float64)
    return t / 255.0 if arr.dtype == np.uint8 else t


def check_sizes(dialect: Dialect, names: Sequence[str], sizes: dict[tuple[int, int], str], with_gt: bool) -> None:
    """Raise MetricsInputError naming an image whose size the dialect's metrics cannot score (e.g. 1x1 against an
    11x11 window), before any scoring: small sizes are probed on a blank image of that size."""
    for (h, w), where in sizes.items():
        if min(h, w) > PROBE_SIZE:
            continue
        blank = torch.zeros(1, 1, h, w, dtype=torch.float64)
        try:
            dialect.compute(blank, blank, blank, names, gt=blank if with_gt else None)
        except ValueError as err:
            raise MetricsInputError(f"{where}: a {h}x{w} image cannot be scored with dialect {dialect.name!r}: "
                                    f"{err}") from err


def _write_csv_atomic(df: pd.DataFrame, out_csv: Path) -> None:
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_csv.name}.", suffix=".tmp", dir=out_csv.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            df.to_csv(fh, index=False, float_format="%.10g")
        os.replace(tmp, out_csv)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def score_folders(a_dir: str | Path, b_dir: str | Path, fused_dir: str | Path, dialect: str = "mmif",
                  metrics: Sequence[str] | str | None = None, out_csv: str | Path | None = None,
                  progress: bool = True, gt_dir: str | Path | None = None, batch_size: int = 8,
                  device: str | torch.device = "cpu", patterns: Mapping[str, str | None] | None = None,
                  allow_subset: bool = False) -> pd.DataFrame:
    """Score every fused image against its two sources; one row per image (``name`` then one column per metric).

    Images of the same size and channel layout are scored in batches (of at most `batch_size` images and
    MAX_BATCH_PIXELS pixels each); colour and gray files may be mixed. 16-bit and float sources follow the depth
    policy of fusion_bench.data.io. A metric undefined for an image (e.g. CC of a constant image) is NaN.
    With ``out_csv`` the table is written atomically (temp file + rename; an existing file is replaced).
    `patterns` and `allow_subset`: how files pair (see `pair_folders`).
    """
    d = get_dialect(dialect)
    names = d.resolve(metrics, gt_dir is not None)
    triples = pair_folders(a_dir, b_dir, fused_dir, patterns, allow_subset)
    gts = images_by_key(Path(gt_dir), "reference (gt)") if gt_dir is not None else None
    if gts is not None:
        missing = [s for s, *_ in triples if s not in gts]
        if missing:
            raise MetricsInputError(f"no reference (gt) image for: {', '.join(missing[:10])}")
    groups: dict[tuple, list[tuple[str, list[Path]]]] = defaultdict(list)
    sizes: dict[tuple[int, int], str] = {}
    for stem, pa, pb, pf in triples:
        paths = [pa, pb, pf] + ([gts[stem]] if gts is not None else [])
        heads = [image_header(p) for p in paths]
        if len({h[:2] for h in heads}) != 1:
            shown = ", ".join(f"{p.name}: {h[0]}x{h[1]}" for p, h in zip(paths, heads))
            raise MetricsInputError(f"size mismatch for {stem!r} (HxW): {shown}")
        sizes.setdefault(heads[0][:2], str(pf))
        groups[tuple(heads)].append((stem, paths))
    check_sizes(d, names, sizes, gts is not None)
    rows: dict[str, dict[str, float]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(triples), desc=f"metrics[{d.name}]", unit="img")
    try:
        for heads, items in groups.items():
            step = batch_limit(heads[0][0], heads[0][1], batch_size)
            for i in range(0, len(items), step):
                chunk = items[i : i + step]
                stacks = [torch.stack([read_metric_image(paths[k]) for _, paths in chunk]).to(device)
                          for k in range(len(chunk[0][1]))]
                gt = stacks[3] if gts is not None else None
                res = d.compute(stacks[0], stacks[1], stacks[2], names, gt=gt)
                for j, (stem, _) in enumerate(chunk):
                    rows[stem] = {m: float(res[m][j]) for m in names}
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame([{"name": s, **rows[s]} for s, *_ in triples], columns=["name", *names])
    if out_csv is not None:
        _write_csv_atomic(df, Path(out_csv))
    return df
