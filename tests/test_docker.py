"""Static checks of the Docker packaging (no Docker engine here): hadolint, compose structure, and that
every documented `docker-compose run` command names a real service, script and flags."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("*GUIDE*.md")), *sorted((ROOT / "deploy").glob("*.md"))]


def test_hadolint_reports_nothing():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout


def test_services_exist_with_their_roles():
    assert {"pidog_rl", "tensorboard", "pidog_rl_gpu"} <= set(SERVICES)
    assert "train_pretrain_finetune.py" in SERVICES["pidog_rl"]["command"]
    assert "--help" in SERVICES["pidog_rl"]["command"]
    assert "6006:6006" in SERVICES["tensorboard"]["ports"]
    assert "tensorboard" in SERVICES["tensorboard"]["command"]
    gpu = SERVICES["pidog_rl_gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert gpu["build"]["args"]["TORCH_VARIANT"].startswith("cu")


def test_training_service_passes_display_x11_and_shared_memory():
    svc = SERVICES["pidog_rl"]
    env = svc["environment"]
    assert env["MUJOCO_GL"] == "egl" and "DISPLAY" in env
    assert any(v.startswith("/tmp/.X11-unix:") for v in svc["volumes"])
    assert svc["shm_size"]
    # The variables the code reads are the ones the service sets.
    code = "".join(p.read_text() for p in ROOT.rglob("*.py") if ".venv" not in p.parts)
    assert "MUJOCO_GL" in code and "DISPLAY" in code


def test_volume_sources_build_contexts_and_dockerfiles_exist():
    ignored = (ROOT / ".gitignore").read_text().split()
    readme = (ROOT / "README.md").read_text()
    for name, svc in SERVICES.items():
        build = svc.get("build", {})
        if build:
            assert (ROOT / build["context"]).is_dir(), name
            assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file(), name
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("/"):
                continue                                        # host paths (the X11 socket)
            rel = src.removeprefix("./")
            if not (ROOT / rel).exists():
                # Output folders are git-ignored; the README creates them before the first run so
                # Docker does not create them owned by root.
                assert f"{rel}/" in ignored and f"mkdir -p {rel}" in readme, f"{name}: {src} missing"


def test_dockerfile_installs_with_the_same_script_and_files_as_ci():
    dockerfile = (ROOT / "Dockerfile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = (ROOT / "install.sh").read_text()
    assert "./install.sh" in ci and "./install.sh --deps-only" in dockerfile and "./install.sh --project-only" in dockerfile
    used = set(re.findall(r"requirements[\w-]*\.txt", install))
    assert used == {"requirements.txt", "requirements-dev.txt", "requirements-nodeps.txt"}
    copied = re.search(r"COPY install\.sh (.+) \./", dockerfile).group(1).split()
    assert set(copied) == used
    assert "torch==${TORCH_VERSION}" in install and "TORCH_VERSION=2.13.0" in install
    assert "ARG TORCH_VARIANT=cpu" in dockerfile and re.search(r"^USER \d+", dockerfile, re.M)
    assert "MUJOCO_GL=egl" in dockerfile and 'VOLUME ["/app/outputs"]' in dockerfile


def documented_runs():
    runs = []
    for doc in DOCS:
        text = doc.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            if "docker-compose run" in line:
                runs.append((doc.name, line[line.index("docker-compose run"):].split("#")[0].strip().strip("`")))
    return runs


def test_docs_contain_docker_commands():
    assert len(documented_runs()) >= 3


@pytest.mark.parametrize("doc,command", documented_runs())
def test_documented_docker_commands_use_real_services_scripts_and_flags(doc, command):
    words = shlex.split(command)[2:]                             # after "docker-compose run"
    while words and words[0].startswith("-"):                    # docker-compose options (--rm, -e X=Y)
        takes_value = words[0] in ("-e", "--env", "-p", "--publish", "-v", "--volume", "--name")
        words = words[2:] if takes_value else words[1:]
    service, argv = words[0], words[1:]
    assert service in SERVICES, f"{doc}: unknown service {service!r}"
    if not argv or argv[0] != "python":
        return
    script = ROOT / argv[1]
    assert script.is_file(), f"{doc}: {argv[1]} does not exist"
    env = {**os.environ, "MUJOCO_GL": "egl"}
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                               env=env, timeout=120).stdout
    for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert re.search(rf"(^|\s|\[){re.escape(flag)}([\s,=\]]|$)", help_text, re.M), \
            f"{doc}: {argv[1]} does not accept {flag}"
