"""The package's build backend: maturin's, after building the C library the wheel carries.

maturin builds one crate, the extension; the package also carries ``libtallymalloc.so`` (the
allocator the extension loads, and what ``LD_PRELOAD`` takes) and its header. So before
maturin makes a wheel, this runs ``cargo build --release -p tallymalloc-capi`` in the workspace
around the package (the same target directory as every other build, so an up-to-date library
costs nothing) and copies both into the package's source, where maturin's ``include`` takes
them. maturin's sdist holds only the extension's crate; this adds the C library's crates, the
workspace's cargo configuration and this backend, so that the sdist builds the same wheel.
Every other hook is maturin's own.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import maturin
from maturin import (  # noqa: F401 (the hooks pip calls, served by maturin)
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: The crates the C library is built from, which the sdist must carry too.
LIBRARY_CRATES = ("tallymalloc", "tallymalloc-capi")


def _workspace() -> Path:
    """The workspace around the source tree (hooks run in it): the clone's root above
    ``crates/tallymalloc-py``, or an sdist's own root."""
    for directory in (Path.cwd(), *Path.cwd().parents):
        if (directory / "crates" / "tallymalloc-capi" / "Cargo.toml").exists():
            return directory
    raise RuntimeError(
        f"no tallymalloc workspace around {Path.cwd()}: build the package from a clone of the "
        "repository (pip install ./crates/tallymalloc-py) or from its sdist"
    )


def _cargo(*arguments: str, cwd: Path, capture: bool = False) -> bytes:
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if not os.path.exists(cargo):
        raise RuntimeError("building tallymalloc needs cargo (Rust's build tool): https://rustup.rs")
    # Started in the workspace, so its .cargo/config.toml (the thread-local model the library
    # needs) applies.
    result = subprocess.run(
        [cargo, *arguments], cwd=cwd, check=True, stdout=subprocess.PIPE if capture else None
    )
    return result.stdout if capture else b""


def _bundle_library() -> None:
    """Builds the C library and copies it and its header into the package's source."""
    workspace = _workspace()
    _cargo("build", "--release", "-p", "tallymalloc-capi", cwd=workspace)
    metadata = _cargo("metadata", "--format-version", "1", "--no-deps", cwd=workspace, capture=True)
    target = Path(json.loads(metadata)["target_directory"])
    destination = Path.cwd() / "python" / "tallymalloc"
    shutil.copyfile(target / "release" / "libtallymalloc.so", destination / "libtallymalloc.so")
    shutil.copyfile(
        workspace / "crates" / "tallymalloc-capi" / "include" / "tallymalloc.h",
        destination / "include" / "tallymalloc.h",
    )


def build_sdist(sdist_directory, config_settings=None):
    name = maturin.build_sdist(sdist_directory, config_settings)
    _complete_sdist(Path(sdist_directory) / name)
    return name


def _complete_sdist(path: Path) -> None:
    """Adds to maturin's sdist what building the C library from it takes."""
    workspace = _workspace()
    with tarfile.open(path, "r:gz") as archive:
        members = archive.getmembers()
        contents = {m.name: archive.extractfile(m).read() for m in members if m.isfile()}
    root = members[0].name.split("/")[0]
    added = {}
    for crate in LIBRARY_CRATES:
        listed = _cargo(
            "package", "--list", "--allow-dirty", "-p", crate, cwd=workspace, capture=True
        )
        for relative in listed.decode().split():
            # The library's sources and build script; not its tests or cargo's bookkeeping.
            if relative.startswith("tests/") or relative in (
                ".cargo_vcs_info.json", "Cargo.toml.orig", "Cargo.lock"
            ):
                continue
            source = workspace / "crates" / crate / relative
            data = source.read_bytes()
            if relative == "Cargo.toml":
                data = _without_dev_dependencies(data)
            added[f"{root}/crates/{crate}/{relative}"] = data
    added[f"{root}/.cargo/config.toml"] = (workspace / ".cargo" / "config.toml").read_bytes()
    added[f"{root}/build_backend/tallymalloc_build.py"] = Path(__file__).read_bytes()
    package = workspace / "crates" / "tallymalloc-py"
    added[f"{root}/tallymalloc-startup.pth"] = (package / "tallymalloc-startup.pth").read_bytes()
    manifest = contents[f"{root}/Cargo.toml"]
    members_line = re.search(rb"members = \[([^\]]*)\]", manifest)
    if members_line is None:
        raise RuntimeError("maturin's sdist has no workspace members to add the library's to")
    listed = b", ".join(
        [members_line.group(1)] + [f'"crates/{crate}"'.encode() for crate in LIBRARY_CRATES]
    )
    added[f"{root}/Cargo.toml"] = manifest.replace(
        members_line.group(0), b"members = [" + listed + b"]"
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            if member.name in added:
                continue
            data = contents.get(member.name)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
        for name, data in sorted(added.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def _without_dev_dependencies(manifest: bytes) -> bytes:
    """A crate's manifest without its ``[dev-dependencies]`` table, which names crates (the
    command's, for the C library's tests) that the sdist does not carry."""
    kept, skipping = [], False
    for line in manifest.splitlines(keepends=True):
        if line.startswith(b"["):
            skipping = line.strip() == b"[dev-dependencies]"
        if not skipping:
            kept.append(line)
    return b"".join(kept)


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
