"""CREMA-D audio-visual emotion recognition (Cao et al. 2014), OGM-GE protocol (6 classes, 6,698 / 744 clips).

Tree (github CheyneyComputerScience/CREMA-D, git-lfs): `AudioWAV/<clip>.wav` (16 kHz mono), `VideoFlash/<clip>.flv`
(also `AudioMP3/`, `processedResults/`, CSVs: not needed). Clip names are `ActorID_Sentence_Emotion_Level`,
e.g. `1001_DFA_ANG_XX`; the label is the third field (the acted emotion, not the crowd vote), indexed as
OGM-GE: NEU 0, HAP 1, SAD 2, FEA 3, DIS 4, ANG 5.
Split: `splits/cremad/test.txt` = OGM-GE's test.csv (744 clips, committed with attribution); train = every other
clip (OGM-GE's train.csv is exactly the complement: 6,698). There is no validation split.
Inputs come from the cache written by `CREMADDataset.prepare` (`fusion-bench data prepare cremad --root DIR`):
audio from the WAV, frames from the FLV; see datamodules/av_common.py. Default 1 frame per clip (OGM-GE fps=1).
Known defective clips (README): 1076_MTI_SAD_XX has no audio (prepare uses silence and lists it in notes.tsv).
"""

from __future__ import annotations

from pathlib import Path

from fusion_bench.data.base import Problem, read_split_file
from fusion_bench.datamodules.av_common import AVClipDataset, AVDataModule, ClipJob
from fusion_bench.datamodules.paired_common import find_dir
from fusion_bench.errors import DatasetNotFoundError

EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")


class CREMADDataset(AVClipDataset):
    """CREMA-D clips: audio 1x257x188 log-spectrogram, frames Tx3x224x224, target in 0..5 (OGM-GE order)."""

    name = "cremad"
    splits = ("train", "test")
    class_names = ("neutral", "happy", "sad", "fear", "disgust", "anger")
    default_num_frames = 1
    split_source = "OGM-GE test.csv (744, committed); train = all other clips"
    expected_tree = """\
<root>/                       (the CREMA-D repository, git-lfs files pulled)
  AudioWAV/1001_DFA_ANG_XX.wav ...     (7,442 clips)
  VideoFlash/1001_DFA_ANG_XX.flv ...   (7,442 clips)
  fusion_bench_cache/                  (written by `fusion-bench data prepare cremad --root <root>`)
"""

    @classmethod
    def _sources(cls, root: Path) -> tuple[dict[str, dict[str, Path]], list[Problem]]:
        wav_dir, flv_dir = find_dir(root, "AudioWAV"), find_dir(root, "VideoFlash")
        missing = [str(root / n) for n, d in (("AudioWAV", wav_dir), ("VideoFlash", flv_dir)) if d is None]
        if missing:
            raise DatasetNotFoundError(cls.name, root, cls.expected_tree, missing)
        found: dict[str, dict[str, Path]] = {}
        for key, folder, ext in (("wav", wav_dir, ".wav"), ("flv", flv_dir, ".flv")):
            for path in sorted(folder.iterdir()):  # type: ignore[union-attr]
                if path.is_file() and path.suffix.lower() == ext:
                    found.setdefault(path.stem, {})[key] = path
        problems = []
        for clip, files in list(found.items()):
            if len(files) != 2:
                (path,) = files.values()
                other = "VideoFlash/*.flv" if "wav" in files else "AudioWAV/*.wav"
                problems.append(Problem(str(path), f"no partner in {other}"))
                del found[clip]
                continue
            parts = clip.split("_")
            if len(parts) != 4 or parts[2] not in EMOTIONS:
                problems.append(Problem(str(files["wav"]), f"clip name {clip!r} is not Actor_Sentence_Emotion_Level "
                                                           f"with an emotion in {', '.join(EMOTIONS)}"))
                del found[clip]
        return found, problems

    @classmethod
    def jobs(cls, root: Path) -> list[ClipJob]:
        found, _ = cls._sources(root)
        return [ClipJob(clip, files["wav"], files["flv"]) for clip, files in sorted(found.items())]

    def _clips(self) -> tuple[list[tuple[str, int, dict[str, Path], tuple[int, int] | None]], list[Problem], str]:
        found, problems = self._sources(self.root)
        test_path, override = self.split_list("test")
        test = read_split_file(test_path)
        test_set = set(test)
        # a problem about a file goes to the split its clip belongs to
        problems = [p for p in problems if ("test" if Path(p.path).stem in test_set else "train") == self.split]
        if self.split == "test":
            names = test
            problems += [Problem(str(test_path), f"{c!r} is listed but missing from AudioWAV/ and VideoFlash/")
                         for c in test if c not in found and not any(Path(p.path).stem == c for p in problems)]
        else:
            names = [c for c in sorted(found) if c not in test_set]
        clips = [(c, EMOTIONS.index(c.split("_")[2]), {"wav": found[c]["wav"], "flv": found[c]["flv"]}, None)
                 for c in names if c in found]
        variant = f"AudioWAV/ + VideoFlash/; test list {test_path}{' (override)' if override else ''}"
        full = {"train": 6698, "test": 744}[self.split]
        if len(clips) != full:
            variant += f"; {len(clips)} {self.split} clips (the full download gives {full})"
        return clips, problems, variant

    @classmethod
    def make_fake(cls, root: Path, seed: int = 0) -> Path:
        """Tiny real WAV/FLV files for 5 real clip names plus a split override; see datamodules/fake/cremad.py."""
        from fusion_bench.datamodules.fake.cremad import make_fake

        return make_fake(Path(root), seed)


class CREMADDataModule(AVDataModule):
    """CREMA-D (`cremad`): kwargs num_frames (default 1), frame_size (224), split_dir go to the dataset."""

    dataset_class = CREMADDataset
