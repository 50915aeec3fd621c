"""The package's build backend: maturin's, after building the C library the wheel carries.

maturin builds one crate, the extension; the package also carries ``libtallymalloc.so`` (the
allocator the extension loads, and what ``LD_PRELOAD`` takes) and its header. So before
maturin makes a wheel, this runs ``cargo build --release -p tallymalloc-capi`` in the workspace
around the package (the same target directory as every other build, so an up-to-date library
costs nothing) and copies both into the package's source, where maturin's ``include`` takes
them. Every other hook is maturin's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import maturin
from maturin import (  # noqa: F401 (the hooks pip calls, served by maturin)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

PACKAGE = Path(__file__).resolve().parent.parent
WORKSPACE = PACKAGE.parent.parent


def _cargo() -> str:
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if not os.path.exists(cargo):
        raise RuntimeError("building tallymalloc needs cargo (Rust's build tool): https://rustup.rs")
    return cargo


def _bundle_library() -> None:
    """Builds the C library and copies it and its header into the package's source."""
    if not (WORKSPACE / "crates" / "tallymalloc-capi" / "Cargo.toml").exists():
        raise RuntimeError(
            f"{WORKSPACE} is not the tallymalloc workspace: the package builds from a clone "
            "of the repository (pip install ./crates/tallymalloc-py)"
        )
    cargo = _cargo()
    # The workspace's .cargo/config.toml (the thread-local model the library needs) applies to
    # builds started in the workspace.
    subprocess.run(
        [cargo, "build", "--release", "-p", "tallymalloc-capi"], cwd=WORKSPACE, check=True
    )
    metadata = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps"],
        cwd=WORKSPACE,
        check=True,
        stdout=subprocess.PIPE,
    )
    target = Path(json.loads(metadata.stdout)["target_directory"])
    destination = PACKAGE / "python" / "tallymalloc"
    shutil.copyfile(target / "release" / "libtallymalloc.so", destination / "libtallymalloc.so")
    shutil.copyfile(
        WORKSPACE / "crates" / "tallymalloc-capi" / "include" / "tallymalloc.h",
        destination / "include" / "tallymalloc.h",
    )


def _with_honest_tag(config_settings):
    """maturin's PEP 517 hooks tag wheels plain ``linux`` unless told otherwise; an empty
    ``--compatibility`` asks for its default, the oldest manylinux tag the extension's symbols
    allow (scripts/check-installs checks that it covers the bundled library too)."""
    arguments = maturin.get_maturin_pep517_args(config_settings)
    if "--compatibility" in arguments or "--manylinux" in arguments:
        return config_settings
    return {**(config_settings or {}), "build-args": [*arguments, "--compatibility"]}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _bundle_library()
    return maturin.build_wheel(
        wheel_directory, _with_honest_tag(config_settings), metadata_directory
    )


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _bundle_library()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
