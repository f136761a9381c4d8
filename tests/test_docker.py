"""Static checks of the Docker packaging (CI has no Docker engine): hadolint, the Dockerfile's stages,
the compose services (who they run as, what they publish and mount), and that every documented
`docker compose run` / `docker-compose run` command names a real service, script and flags.
docker/smoke.sh does the dynamic checks where an engine is available."""

import fnmatch
import functools
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# The README's first screen and docs/docker.md, in that order: what a Docker user reads.
README = (ROOT / "README.md").read_text() + "\n" + (ROOT / "docs" / "docker.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "deploy").glob("*.md"))]
CALLER = "${HOST_UID:-1000}:${HOST_GID:-1000}"
# CUDA builds PyTorch publishes for torch 2.13.0 on Linux x86_64, from the release's build matrix
# (.github/scripts/generate_binary_build_matrix.py at v2.13.0: CUDA_ARCHES 12.6, 12.9, 13.0, 13.2;
# CUDA_STABLE 13.0, which PyPI's own torch 2.13.0 metadata confirms: cuda-toolkit==13.0.3).
# Re-check this list when TORCH_VERSION in install.sh changes: test_gpu_variant_... fails until then.
TORCH_VERSION = "2.13.0"
TORCH_CUDA_VARIANTS = {"cu126", "cu129", "cu130", "cu132"}


def defaults(value):
    """`${VAR:-default}` -> `default`: what compose uses when the variable is not set."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def stages():
    """The Dockerfile's stages: name -> (base, text)."""
    out = {}
    for m in re.finditer(r"^FROM (\S+) AS (\w+)\n(.*?)(?=^FROM |\Z)", DOCKERFILE, re.M | re.S):
        out[m.group(2)] = (m.group(1), m.group(3))
    return out


def test_hadolint_reports_nothing():
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([exe, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout


def test_apt_packages_are_unpinned_with_the_lint_exception_explained():
    # Debian's mirrors keep only the newest version per suite: an exact pin fails at the next update.
    lines = DOCKERFILE.splitlines()
    runs = [i for i, line in enumerate(lines) if line.startswith("RUN apt-get")]
    assert runs
    for i in runs:
        assert lines[i - 1].strip() == "# hadolint ignore=DL3008", lines[i]
        block = lines[i]
        while block.endswith("\\"):
            i += 1
            block = block[:-1] + " " + lines[i]
        packages = block.split("--no-install-recommends", 1)[1].split("&&")[0].split()
        assert packages and not [p for p in packages if "=" in p], f"exact apt pins rot: {packages}"
    comments = re.sub(r"\n#\s*", " ", DOCKERFILE)
    assert "Debian's mirrors keep only the newest version" in comments


def test_runtime_is_the_default_target_and_dev_tools_live_only_in_the_dev_stage():
    st = stages()
    assert list(st) == ["base", "source", "dev", "runtime"]          # the last stage is the default
    base, dev, runtime, source = st["base"][1], st["dev"][1], st["runtime"][1], st["source"][1]
    assert "WITH_DEV=0" in base and "./install.sh --deps-only" in base
    assert "requirements-dev.txt" not in base and "requirements-dev.txt" not in runtime
    assert st["runtime"][0] == "base" and st["dev"][0] == "base"
    assert "COPY --from=source" in runtime and "COPY --from=dev" not in runtime
    assert re.search(r"rm -rf /src/tests\b", source)                 # no tests without pytest
    assert "./install.sh --dev-only" in dev and "COPY requirements-dev.txt" in dev
    assert "python\", \"-m\", \"pytest" in dev and "xvfb" in dev      # the live-window test runs too
    dev_tools = {re.split(r"[=<>\[ ]", line)[0].lower() for line in
                 (ROOT / "requirements-dev.txt").read_text().splitlines() if line and line[0].isalnum()}
    runtime_reqs = (ROOT / "requirements.txt").read_text().lower()
    assert dev_tools and not any(re.search(rf"^{re.escape(t)}\b", runtime_reqs, re.M) for t in dev_tools)


def test_services_exist_with_their_roles():
    assert {"pidog_rl", "tensorboard", "pidog_rl_gpu", "pidog_rl_live", "pidog_dev"} <= set(SERVICES)
    assert "version" not in COMPOSE                                   # Compose spec: v2, and v1 >= 1.27
    assert "train_pretrain_finetune.py" in SERVICES["pidog_rl"]["command"]
    assert "--help" in SERVICES["pidog_rl"]["command"]
    assert "tensorboard" in SERVICES["tensorboard"]["command"]
    assert SERVICES["pidog_rl"]["build"]["target"] == "runtime"
    assert SERVICES["pidog_dev"]["build"]["target"] == "dev" and SERVICES["pidog_dev"]["profiles"] == ["dev"]
    assert SERVICES["pidog_dev"]["command"] == ["python", "-m", "pytest"]
    gpu = SERVICES["pidog_rl_gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert defaults(gpu["build"]["args"]["TORCH_VARIANT"]).startswith("cu")
    ray = SERVICES["ray_head"]
    assert ray["profiles"] == ["ray"] and ray["command"][:3] == ["ray", "start", "--head"] and "--block" in ray["command"]
    # the runtime image plus Ray (trials run the same pipeline); the default image has no Ray
    assert ray["build"]["target"] == "runtime" and ray["build"]["args"] == {"TORCH_VARIANT": "cpu", "WITH_RAY": "1"}
    assert ray["image"] == "pidog-sim2real:ray" and "WITH_RAY" not in SERVICES["pidog_rl"]["build"]["args"]
    assert re.search(r"^ARG WITH_RAY=0$", stages()["runtime"][1], re.M)


def test_compose_builds_each_image_once():
    # Two services with `build:` for one tag build it twice (and leave the first build dangling).
    builders = {}
    for name, svc in SERVICES.items():
        if "build" in svc:
            assert svc["image"] not in builders, f"{name} and {builders.get(svc['image'])} both build {svc['image']}"
            builders[svc["image"]] = name
    for name, svc in SERVICES.items():
        if "build" not in svc:
            assert svc["image"] in builders and svc.get("pull_policy") == "never", name   # run what compose built
    override = yaml.safe_load((ROOT / "docker" / "compose.host-network.yml").read_text())["services"]
    assert set(override) == set(builders.values())          # a `build:` there would add a build


def test_ray_is_an_optional_extra_with_an_exact_pin():
    runtime = (ROOT / "requirements.txt").read_text()
    assert not re.search(r"^ray\b", runtime, re.M)
    pins = [ln for ln in (ROOT / "requirements-sweep.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(pins) == 1 and re.fullmatch(r"ray\[tune\]==\d+\.\d+\.\d+", pins[0])
    install = (ROOT / "install.sh").read_text()
    assert "WITH_RAY=${WITH_RAY:-0}" in install and "--with-ray" in install
    for args in (["--with-ray", "--project-only"], ["--dev-only", "--ray-only"]):   # refused before installing
        proc = subprocess.run(["bash", str(ROOT / "install.sh"), *args], capture_output=True, text=True)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)


def test_services_run_as_the_caller_with_a_1000_default():
    for name, svc in SERVICES.items():
        assert svc.get("user") == CALLER, f"{name} must run as {CALLER}"
    # The README exports the variables before its first compose command.
    assert 'export HOST_UID="$(id -u)" HOST_GID="$(id -g)"' in README
    first_export = README.index("export HOST_UID")
    assert all(first_export < m.start() for m in re.finditer(r"docker[- ]compose (run|up)", README))


def test_home_and_outputs_are_writable_by_any_uid():
    home = re.search(r"^\s+HOME=(\S+)", DOCKERFILE, re.M).group(1)
    assert re.search(rf"chmod 1777 {re.escape(home)}\b", DOCKERFILE)
    assert DOCKERFILE.count("install -d -m 1777 /app/outputs") == 2   # dev and runtime
    for name, svc in SERVICES.items():
        env = svc.get("environment") or {}
        assert "HOME" not in env and "MPLCONFIGDIR" not in env, name  # the image's HOME stays


def test_tensorboard_is_published_on_localhost_by_default():
    ports = SERVICES["tensorboard"]["ports"]
    assert [defaults(p) for p in ports] == ["127.0.0.1:6006:6006"]
    assert "TENSORBOARD_BIND" in ports[0] and "TENSORBOARD_BIND=0.0.0.0" in README
    for name, svc in SERVICES.items():
        if name != "tensorboard":
            assert "ports" not in svc, name


def project_sources(pattern: str) -> list[Path]:
    """The files under ROOT matching `pattern`, outside .venv (not walked: it holds thousands)."""
    found = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d != ".venv"]
        found += [Path(folder) / n for n in names if fnmatch.fnmatch(n, pattern)]
    return found


def test_x11_is_mounted_only_by_the_live_service():
    live = SERVICES["pidog_rl_live"]
    assert live["profiles"] == ["live"]
    assert "DISPLAY" in live["environment"] and live["environment"]["MUJOCO_GL"] == "egl"
    assert any(v.startswith("/tmp/.X11-unix:") for v in live["volumes"])
    for name, svc in SERVICES.items():
        if name != "pidog_rl_live":
            assert not any("X11" in v for v in svc.get("volumes", [])), f"{name} mounts the X11 socket"
            assert "DISPLAY" not in (svc.get("environment") or {}), name
    svc = SERVICES["pidog_rl"]
    assert svc["environment"]["MUJOCO_GL"] == "egl" and svc["shm_size"]
    # The variables the code reads are the ones the services set.
    code = "".join(p.read_text() for p in project_sources("*.py"))
    assert "MUJOCO_GL" in code and "DISPLAY" in code


def test_volume_sources_build_contexts_and_dockerfiles_exist():
    ignored = (ROOT / ".gitignore").read_text().split()
    for name, svc in SERVICES.items():
        build = svc.get("build", {})
        if build:
            assert (ROOT / build["context"]).is_dir(), name
            assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")).is_file(), name
        for vol in svc.get("volumes", []):
            src = defaults(vol).split(":")[0]
            if src.startswith("/"):
                continue                                        # host paths (the X11 socket)
            rel = src.removeprefix("./")
            if not (ROOT / rel).exists():
                # Output folders are git-ignored; the README creates them before the first run so
                # Docker does not create them owned by root.
                assert f"{rel}/" in ignored and f"mkdir -p {rel}" in README, f"{name}: {src} missing"


def test_dockerfile_installs_with_the_same_script_and_files_as_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    install = (ROOT / "install.sh").read_text()
    assert "./install.sh" in ci and "./install.sh --deps-only" in DOCKERFILE
    assert "./install.sh --project-only" in DOCKERFILE and "./install.sh --dev-only" in DOCKERFILE
    used = set(re.findall(r"requirements[\w-]*\.txt", install))
    assert used == {"requirements.txt", "requirements-dev.txt", "requirements-nodeps.txt", "requirements-sweep.txt"}
    copied = set()
    for m in re.finditer(r"^COPY (?!--from)(.+) \./$", DOCKERFILE, re.M):
        copied |= set(m.group(1).split()) - {"install.sh", "."}
    assert copied == used
    assert "torch==${TORCH_VERSION}" in install and f"TORCH_VERSION={TORCH_VERSION}" in install
    assert "ARG TORCH_VARIANT=cpu" in DOCKERFILE and re.search(r"^USER \d+", DOCKERFILE, re.M)
    assert "MUJOCO_GL=egl" in DOCKERFILE and 'VOLUME ["/app/outputs"]' in DOCKERFILE


def test_install_sh_without_arguments_still_installs_the_dev_tools():
    install = (ROOT / "install.sh").read_text()
    assert "WITH_DEV=${WITH_DEV:-1}" in install                     # CI and the README: ./install.sh
    proc = subprocess.run(["bash", str(ROOT / "install.sh"), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--dev-only" in proc.stderr


def test_gpu_variant_is_published_for_the_pinned_torch():
    install = (ROOT / "install.sh").read_text()
    assert f"TORCH_VERSION={TORCH_VERSION}" in install, "torch changed: re-check TORCH_CUDA_VARIANTS"
    assert 'torch==${TORCH_VERSION}+${TORCH_VARIANT}' in install
    assert 'https://download.pytorch.org/whl/${TORCH_VARIANT}' in install
    gpu = SERVICES["pidog_rl_gpu"]
    variant = defaults(gpu["build"]["args"]["TORCH_VARIANT"])
    assert variant in TORCH_CUDA_VARIANTS and defaults(gpu["image"]) == f"pidog-sim2real:{variant}"
    for named in set(re.findall(r"\bcu1\d\d\b", README + DOCKERFILE)):
        assert named in TORCH_CUDA_VARIANTS, f"{named} is not a torch {TORCH_VERSION} CUDA build"


def test_smoke_script_is_documented_and_runs_the_listed_checks():
    smoke = ROOT / "docker" / "smoke.sh"
    assert smoke.is_file() and smoke.stat().st_mode & stat.S_IXUSR
    text = smoke.read_text()
    assert subprocess.run(["bash", "-n", str(smoke)]).returncode == 0
    for check in ("build", "default-command", "gym-step", "offscreen-render", "quick-run-uid",
                  "outputs-owner-uid", "tensorboard", "tests-in-image", "sweep-local", "ray-image"):
        assert f'"{check}' in text, f"smoke.sh lacks the {check} check"
    assert "docker compose" in text and "docker-compose" in text     # either compose
    assert "mktemp -d" in text and "trap " in text                  # its own outputs folder, cleaned
    assert "docker/smoke.sh" in README


def documented_runs():
    """(doc, words after `run`/`exec`) for every `docker compose run|exec` / `docker-compose run|exec` in the docs."""
    runs = []
    for doc in DOCS:
        text = doc.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            m = re.search(r"docker(-compose| compose)\s((?:-\S+\s+(?:[^-\s]\S*\s+)?)*)(?:run|exec)\s", line)
            if m:
                runs.append((doc.name, line[m.end():].split("#")[0].strip().strip("`")))
    return runs


def test_docs_contain_docker_commands():
    runs = documented_runs()
    assert len(runs) >= 3
    text = "".join(d.read_text() for d in DOCS)
    assert "docker compose run" in text and "docker-compose run" in text   # both compose versions


def service_and_argv(command: str) -> tuple[str, list[str]]:
    """A documented command's service and what it runs, without the run options (--rm, -T, -e X=Y)."""
    words = shlex.split(command)
    while words and words[0].startswith("-"):
        takes_value = words[0] in ("-e", "--env", "-p", "--publish", "-v", "--volume", "--name", "-u",
                                   "--user", "-w", "--workdir", "--entrypoint")
        words = words[2:] if takes_value else words[1:]
    return words[0], words[1:]


@functools.lru_cache(maxsize=None)
def script_helps() -> dict[Path, str]:
    """`python <script> --help` as a user runs it, for each script a documented command runs: each once (many
    commands share one), all started at once."""
    env = {**os.environ, "MUJOCO_GL": "egl"}
    scripts = set()
    for _, command in documented_runs():
        _, argv = service_and_argv(command)
        if argv[:1] == ["python"] and len(argv) > 1 and argv[1] != "-m" and (ROOT / argv[1]).is_file():
            scripts.add(ROOT / argv[1])
    procs = {script: subprocess.Popen([sys.executable, str(script), "--help"], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, env=env) for script in scripts}
    return {script: proc.communicate(timeout=120)[0] for script, proc in procs.items()}


@pytest.mark.parametrize("doc,command", documented_runs())
def test_documented_docker_commands_use_real_services_scripts_and_flags(doc, command):
    service, argv = service_and_argv(command)
    assert service in SERVICES, f"{doc}: unknown service {service!r}"
    if not argv or argv[0] != "python":
        return
    if argv[1] == "-m":                                          # python -m pytest ...
        assert argv[2] == "pytest" and SERVICES[service]["build"]["target"] == "dev", \
            f"{doc}: pytest is only in the dev image (service pidog_dev)"
        return
    script = ROOT / argv[1]
    assert script.is_file(), f"{doc}: {argv[1]} does not exist"
    help_text = script_helps()[script]
    for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert re.search(rf"(^|\s|\[){re.escape(flag)}([\s,=\]]|$)", help_text, re.M), \
            f"{doc}: {argv[1]} does not accept {flag}"
