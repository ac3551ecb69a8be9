"""The container image: built from the Containerfile, `errand up` in it serves a notification.

Runs only when asked (`-m image`, this file on the command line, or ERRAND_TEST_IMAGE=1;
see tests/conftest.py): the first run spends minutes on debootstrap and pip. With no
registry on the test machine, the base is Debian bookworm from debootstrap instead of
python:3.12-slim; buildah runs the image with chroot isolation on the host's network.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from errand.secrets_store import load as load_secrets
from errand.server.embedded import free_port
from support.container import (
    build_image,
    buildah,
    ensure_debian_base,
    image_config,
    image_size_mb,
    missing_tools,
)
from support.processes import ErrandProcess, descendants, proc_info, still_running, wait_ready
from support.waiting import wait_sync

ROOT = Path(__file__).resolve().parents[2]
IMAGE_TAG = "localhost/errand:test"
MAX_IMAGE_MB = 600.0  # Debian base ~250 MB + the venv ~110 MB; python:3.12-slim is smaller

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(1800)]

FIGURES: dict[str, object] = {}  # printed and saved to test-artifacts/container-image.json


@pytest.fixture(scope="module")
def host_ready() -> None:
    missing = missing_tools()
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed: `python3 run.py test -m image` installs "
            "them with apt-get when run as root, or `apt-get install buildah debootstrap`"
        )
    if os.geteuid() != 0:
        pytest.skip("buildah --isolation chroot and debootstrap need root")


@pytest.fixture(scope="module")
def image(host_ready: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image, built once per run from the working tree (the base is cached across runs)."""
    work = tmp_path_factory.mktemp("image")
    base = ensure_debian_base(work)
    built = build_image(ROOT, base.tag, IMAGE_TAG, work / "build.log")
    FIGURES.update(
        base=base.tag,
        base_build_s=round(base.seconds, 1),
        base_cached=base.cached,
        image_build_s=round(built.seconds, 1),
        image_size_mb=image_size_mb(IMAGE_TAG),
    )
    return built.tag


@pytest.fixture
def container(image: str) -> Iterator[str]:
    """A working container of the image, removed afterwards."""
    name = buildah("from", "--pull=never", image).strip()
    try:
        yield name
    finally:
        buildah("rm", name)


def test_image_config_is_what_the_docs_promise(container: str) -> None:
    config = image_config(IMAGE_TAG)
    env = dict(item.split("=", 1) for item in config["Env"])
    assert image_size_mb(IMAGE_TAG) < MAX_IMAGE_MB
    assert config["User"] == "errand"
    assert env["ERRAND_DATA_DIR"] == "/data" and "/data" in config["Volumes"]
    assert env["ERRAND_WEBHOOK_ALLOW_PRIVATE"] == "false"  # reachable from outside: no SSRF
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["errand"]
    assert config["Cmd"] == ["up", "--host", "0.0.0.0", "--port", "8000"]
    assert "/readyz" in " ".join(config["Healthcheck"]["Test"])
    uid = buildah("run", "--isolation", "chroot", container, "--", "id", "-u").strip()
    assert uid != "0", "the image runs as root"
    site = buildah(
        "run",
        "--isolation",
        "chroot",
        container,
        "--",
        "python",
        "-c",
        "import errand, sys; print(errand.__file__)",
    ).strip()
    assert site.startswith("/opt/errand/"), site


def test_errand_up_in_the_image_completes_a_notification_and_stops_on_sigterm(
    container: str, tmp_path: Path, artifacts_dir: Path
) -> None:
    test_start = time.monotonic()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = _volume(container, tmp_path / "data")
    argv = [
        "buildah",
        "run",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--volume",
        f"{data}:/data",
        container,
        "--",
        # The image's ENTRYPOINT and CMD, on loopback and a free port (the test shares
        # the host's network), with one API process to spare the shared test machine.
        "errand",
        "up",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--api-workers",
        "1",
    ]
    up = _spawn(argv, tmp_path / "up.log")
    try:
        wait_ready(base, up, timeout_s=120)
        FIGURES["ready_s"] = round(time.monotonic() - test_start, 1)
        _complete_a_notification(base, data)
        _run_the_healthcheck(container, port)
        assert _stop_like_docker_stop(up) == 0, up.log()[-4000:]
        assert "errand: stopped" in up.log()
    finally:
        if up.alive:
            up.kill()
    assert "private webhook URLs are allowed" not in up.log()
    assert (data / "valkey" / "appendonly").is_dir(), "Valkey's AOF is not on the volume"
    FIGURES["run_s"] = round(time.monotonic() - test_start, 1)
    (artifacts_dir / "container-image.json").write_text(json.dumps(FIGURES, indent=2))
    print(f"\ncontainer image figures: {json.dumps(FIGURES)}")


def _volume(container: str, path: Path) -> Path:
    """A host directory for /data owned by the image's user, as a Docker named volume would be.

    buildah 1.28 mounts the image's own VOLUME over a `--volume` at the same path, so the
    working container forgets that declaration first (the image keeps it).
    """
    buildah("config", "--volume", "/data-", container)
    uid = int(buildah("run", "--isolation", "chroot", container, "--", "id", "-u"))
    path.mkdir(mode=0o700)
    os.chown(path, uid, uid)
    return path


def _spawn(argv: list[str], log_path: Path) -> ErrandProcess:
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ErrandProcess("buildah run errand up", popen, log_path, proc_info(popen.pid))


def _complete_a_notification(base: str, data: Path) -> None:
    kept = load_secrets(data)  # `errand up` made the default client and kept its key there
    assert kept is not None and kept.api_key is not None
    headers = {"Authorization": f"Bearer {kept.api_key}"}
    with httpx.Client(base_url=base, timeout=30, headers=headers) as http:
        private = http.post(
            "/notifications",
            json={"type": "welcome", "userId": "u-img", "webhookUrl": "http://127.0.0.1:9/hook"},
        )
        assert private.status_code == 422, private.text  # no private webhooks by default
        posted = http.post("/notifications", json={"type": "welcome", "userId": "u-img"})
        assert posted.status_code == 202, posted.text
        status_url = posted.json()["statusUrl"]
        final = wait_sync(
            lambda: http.get(status_url).json(),
            lambda body: body["status"] in ("completed", "failed"),
            timeout_s=60,
            what="the notification to finish",
        )
    assert final["status"] == "completed" and final["attemptsMade"] == 1, final


def _run_the_healthcheck(container: str, port: int) -> None:
    """The image's HEALTHCHECK command, pointed at the test's port, exits 0."""
    test = image_config(IMAGE_TAG)["Healthcheck"]["Test"]
    assert test[0] == "CMD", test
    command = [part.replace(":8000/", f":{port}/") for part in test[1:]]
    buildah("run", "--isolation", "chroot", "--network", "host", container, "--", *command)


def _stop_like_docker_stop(up: ErrandProcess) -> int:
    """SIGTERM to `errand up`, the container's main process, as `docker stop` sends it.

    `buildah run` is not a container runtime: it does not forward signals (a SIGTERM
    to it kills the command). So the signal goes to errand by pid, which chroot
    isolation leaves visible from the host, and buildah exits with errand's code.
    """
    tree = descendants(up.pid)
    main = [  # the interpreter running the `errand` script (not buildah's exec wrapper)
        p
        for p in tree
        if p.cmdline.startswith("/opt/errand/bin/python") and "/bin/errand up " in p.cmdline
    ]
    assert len(main) == 1, [p.cmdline for p in tree]
    os.kill(main[0].pid, signal.SIGTERM)
    code = up.wait(90)
    assert [p.cmdline for p in tree if still_running(p)] == [], "processes outlived errand up"
    return code
