"""Packages and a build hook (the project is described in pyproject.toml).

`methods/` and `datamodules/` stay top-level folders of the repository but install inside the package namespace, as
`fusion_bench.methods` and `fusion_bench.datamodules` (setuptools' package-dir mapping), so a wheel puts nothing
generic into site-packages. In a source checkout `fusion_bench/__init__.py` finds them beside the package.

The protocol files, suites, the papers' reported numbers and the weights catalogue (`zoo.yaml`) live in the
repository's top-level `benchmarks/` (the layout the README describes); the wheel carries a copy as
`fusion_bench/_benchmarks/`, which `fusion_bench.benchmark.protocol.benchmarks_dir()` (and
`fusion_bench.weights.zoo.default_catalogue_path()`) read when there is no source checkout.
"""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

SHIPPED = ("protocols", "suites", "reported")  # benchmarks/perf holds scripts for the repository only
SHIPPED_FILES = ("zoo.yaml",)  # the weights catalogue (fusion_bench.weights.zoo)
SUFFIXES = (".yaml", ".csv", ".md", ".txt")


class BuildPyWithBenchmarks(build_py):
    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent / "benchmarks"
        for sub in SHIPPED:
            for src in sorted((root / sub).rglob("*")):
                if src.is_file() and src.suffix in SUFFIXES:
                    dst = Path(self.build_lib) / "fusion_bench" / "_benchmarks" / src.relative_to(root)
                    self.mkpath(str(dst.parent))
                    self.copy_file(str(src), str(dst))
        for name in SHIPPED_FILES:
            dst = Path(self.build_lib) / "fusion_bench" / "_benchmarks" / name
            self.mkpath(str(dst.parent))
            self.copy_file(str(root / name), str(dst))


MAPPED = ("methods", "datamodules")  # repository folder -> fusion_bench.<folder>
PACKAGES = [*find_packages(include=["fusion_bench", "fusion_bench.*"]),
            *(f"fusion_bench.{top}{'.' + sub if sub else ''}" for top in MAPPED
              for sub in ["", *find_packages(top)])]
DATA = ["*.yaml", "*.txt", "*.md", "*.csv"]

setup(
    packages=PACKAGES,
    package_dir={"": ".", **{f"fusion_bench.{top}": top for top in MAPPED}},
    package_data={"": DATA, "fusion_bench.datamodules": ["splits/**/*.txt", "splits/**/*.md"]},
    cmdclass={"build_py": BuildPyWithBenchmarks},
)
