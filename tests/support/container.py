"""Container images with buildah, on a machine with no registry: a Debian base from debootstrap.

Every step shells out to `buildah` (chroot isolation, so no container runtime, no
network namespace and no registry are needed) and is timed. The base image is
cached under a tag that names its inputs, so only the first run pays for debootstrap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Debian packages the test needs on the host; `python3 run.py test -m image` installs them.
HOST_TOOLS = ("buildah", "debootstrap")
SUITE = "bookworm"  # Python 3.11, the oldest errand supports
MIRROR = os.environ.get("ERRAND_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What the Containerfile needs of its base: python3 with venv (ensurepip) and CA certificates.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# The host's CA bundle, mounted over the base's during the build: pip then trusts what the
# host trusts (a TLS-intercepting proxy's CA), and the image keeps Debian's own bundle.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_TIMEOUT_S = 900.0


def missing_tools() -> list[str]:
    """The host tools that are not installed."""
    return [tool for tool in HOST_TOOLS if shutil.which(tool) is None]


def buildah(*args: str, timeout_s: float = 120.0) -> str:
    """Run `buildah args...`; its stdout. Raises CalledProcessError with stderr on failure."""
    done = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout


def image_exists(tag: str) -> bool:
    return (
        subprocess.run(
            ["buildah", "inspect", "--type", "image", tag], capture_output=True, check=False
        ).returncode
        == 0
    )


def image_size_mb(tag: str) -> float:
    """The image's unpacked size in MB (10**6 bytes) as `buildah images` reports it."""
    size = str(json.loads(buildah("images", "--json", tag))[0]["size"])  # e.g. "422 MB"
    number, unit = size.split()
    return float(number) * {"kB": 1e-3, "MB": 1.0, "GB": 1e3}[unit]


def image_config(tag: str) -> dict[str, Any]:
    """The Docker-format config (Env, User, Healthcheck, ...) of an image."""
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", tag))["Docker"]
    return dict(config["config"])


@dataclass(frozen=True, slots=True)
class Built:
    tag: str
    seconds: float
    cached: bool


def base_tag() -> str:
    """A tag that changes whenever what goes into the base changes."""
    inputs = "\n".join([SUITE, MIRROR, *BASE_PACKAGES]).encode()
    return f"localhost/errand-test-base:{SUITE}-{hashlib.sha256(inputs).hexdigest()[:12]}"


def ensure_debian_base(work_dir: Path) -> Built:
    """A minimal Debian image with Python, made by debootstrap and committed by buildah."""
    tag = base_tag()
    if image_exists(tag):
        return Built(tag, 0.0, cached=True)
    start = time.monotonic()
    rootfs, archive = work_dir / "rootfs", work_dir / "rootfs.tar"
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            SUITE,
            str(rootfs),
            MIRROR,
        ],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT_S,
    )
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):  # not needed in an image
        for entry in (rootfs / cache).glob("*"):
            if entry.is_file():
                entry.unlink()
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    shutil.rmtree(rootfs)
    container = buildah("from", "scratch").strip()
    try:
        buildah("add", container, str(archive), "/")  # a local tar is unpacked
        buildah("config", "--cmd", "/bin/sh", container)
        buildah("commit", "--quiet", "--rm", container, tag, timeout_s=BUILD_TIMEOUT_S)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise
    archive.unlink()
    return Built(tag, time.monotonic() - start, cached=False)


def build_image(context: Path, base: str, tag: str, log_path: Path) -> Built:
    """`buildah bud` the Containerfile on `base` (Docker format: OCI has no HEALTHCHECK)."""
    start = time.monotonic()
    argv = [
        "buildah",
        "bud",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--layers",
        "--format",
        "docker",
        "--build-arg",
        f"BASE={base}",
        "--tag",
        tag,
        "--file",
        str(context / "Containerfile"),
    ]
    if HOST_CA_BUNDLE.exists():
        argv += ["--volume", f"{HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro"]
    with log_path.open("wb") as log:
        code = subprocess.run(
            [*argv, str(context)],
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        ).returncode
    if code != 0:
        tail = log_path.read_text(errors="replace")[-4000:]
        raise AssertionError(f"buildah bud exited with {code}:\n{tail}")
    return Built(tag, time.monotonic() - start, cached=False)
