"""setup.py's decisions, checked without running it: torch build choice, pins, version check, paths.

setup.py is imported as a module (it runs nothing at import); the side-effect steps (venv, pip) are
verified by running it for real in CI (``.ci/run``), these tests cover the logic that picks what to do.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SMI_12_8 = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.133.20             Driver Version: 570.133.20     CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
|   0  NVIDIA GeForce RTX 4090        Off |   00000000:01:00.0  On |                  Off |
+-----------------------------------------------------------------------------------------+
"""
SMI_12_4 = "| NVIDIA-SMI 550.54.14   Driver Version: 550.54.14   CUDA Version: 12.4     |"
SMI_13_0 = "| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version: 13.0     |"
SMI_11_4 = "| NVIDIA-SMI 470.82.01   Driver Version: 470.82.01   CUDA Version: 11.4     |"
SMI_WINDOWS = "| NVIDIA-SMI 576.02    Driver Version: 576.02    CUDA Version : 12.9  |"
SMI_NO_CUDA = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."


@pytest.fixture(scope="module")
def setup_module():
    spec = importlib.util.spec_from_file_location("lora_factory_setup_script", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def always(answer: bool):
    seen: list[str] = []

    def reachable(url: str) -> bool:
        seen.append(url)
        return answer

    reachable.seen = seen  # type: ignore[attr-defined]
    return reachable


# -- python version --------------------------------------------------------------------------------
def test_check_python_accepts_310_and_newer(setup_module):
    for version in ((3, 10, 0), (3, 11, 7), (3, 13, 1), (4, 0, 0)):
        setup_module.check_python(version)


@pytest.mark.parametrize("version", [(3, 9, 18), (3, 8, 0), (2, 7, 18)])
def test_check_python_refuses_older_with_bilingual_message(setup_module, version):
    with pytest.raises(setup_module.SetupError) as info:
        setup_module.check_python(version)
    assert info.value.code == "PYTHON_TOO_OLD"
    assert "3.10" in info.value.message_en and f"{version[0]}.{version[1]}" in info.value.message_en
    assert "3.10" in info.value.message_ja and "以上" in info.value.message_ja


# -- CUDA version and wheel index --------------------------------------------------------------------
@pytest.mark.parametrize(
    "output, expected",
    [(SMI_12_8, (12, 8)), (SMI_12_4, (12, 4)), (SMI_13_0, (13, 0)), (SMI_WINDOWS, (12, 9)),
     (SMI_NO_CUDA, None), ("", None)],
)
def test_parse_cuda_version(setup_module, output, expected):
    assert setup_module.parse_cuda_version(output) == expected


@pytest.mark.parametrize(
    "cuda, tag",
    [((13, 1), "cu130"), ((13, 0), "cu130"), ((12, 9), "cu128"), ((12, 8), "cu128"), ((12, 7), "cu126"),
     ((12, 6), "cu126"), ((12, 4), "cu118"), ((11, 8), "cu118"), ((11, 4), None), (None, None)],
)
def test_choose_cuda_tag_never_exceeds_the_driver(setup_module, cuda, tag):
    assert setup_module.choose_cuda_tag(cuda) == tag


def test_plan_linux_gpu_uses_the_matching_cuda_index(setup_module):
    reachable = always(True)
    plan = setup_module.plan_torch("Linux", SMI_12_8, False, "2.13.0", reachable)
    assert plan.index_url == "https://download.pytorch.org/whl/cu128"
    assert plan.requirement == "torch==2.13.0"
    assert plan.flavour == "cu128"
    assert reachable.seen == ["https://download.pytorch.org/whl/cu128"]


def test_plan_windows_gpu_and_cuda_12_4_driver(setup_module):
    plan = setup_module.plan_torch("Windows", SMI_12_4, False, "2.13.0", always(True))
    assert plan.index_url == "https://download.pytorch.org/whl/cu118"


def test_plan_cpu_when_no_nvidia_smi(setup_module):
    for system in ("Linux", "Windows"):
        plan = setup_module.plan_torch(system, None, False, "2.13.0", always(True))
        assert plan.index_url == "https://download.pytorch.org/whl/cpu"
        assert plan.flavour == "cpu"


def test_plan_cpu_flag_wins_over_a_gpu(setup_module):
    plan = setup_module.plan_torch("Linux", SMI_12_8, True, "2.13.0", always(True))
    assert plan.index_url.endswith("/cpu")
    assert any("--cpu" in reason for reason in plan.reasons)


def test_plan_old_driver_falls_back_to_cpu(setup_module):
    plan = setup_module.plan_torch("Linux", SMI_11_4, False, "2.13.0", always(True))
    assert plan.index_url.endswith("/cpu")
    assert any("11.4" in reason for reason in plan.reasons)


def test_plan_unreachable_index_uses_pips_sources_with_the_pin(setup_module):
    """The offline-mirror case (this CI machine): plain ``pip install torch==2.13.0`` finds the local wheel."""
    plan = setup_module.plan_torch("Linux", None, False, "2.13.0", always(False))
    assert plan.index_url is None
    assert plan.requirement == "torch==2.13.0"
    assert any("unreachable" in reason for reason in plan.reasons)


def test_plan_macos_uses_pypi_without_probing(setup_module):
    reachable = always(True)
    plan = setup_module.plan_torch("Darwin", None, False, "", reachable)
    assert plan.index_url is None and plan.requirement == "torch"
    assert reachable.seen == []


def test_plan_index_override(setup_module):
    plan = setup_module.plan_torch("Linux", SMI_12_8, False, "2.13.0", always(False), index_override="https://m/x")
    assert plan.index_url == "https://m/x"


# -- pip commands and constraints ----------------------------------------------------------------------
def test_pip_command_passes_constraints_and_index(setup_module, tmp_path):
    constraints = tmp_path / "c.txt"
    cmd = setup_module.pip_install_command("/v/python", ["-e", "/repo[test]"], constraints=constraints,
                                           index_url="https://i")
    assert cmd[:4] == ["/v/python", "-m", "pip", "install"]
    assert cmd[cmd.index("-c") + 1] == str(constraints)
    assert cmd[cmd.index("--index-url") + 1] == "https://i"
    assert cmd[-2:] == ["-e", "/repo[test]"]
    plain = setup_module.pip_install_command("py", ["torch==2.13.0"])
    assert "-c" not in plain and "--index-url" not in plain


def test_constraints_text_pins_exact_versions(setup_module):
    text = setup_module.constraints_text({"torchvision": "0.28.0", "torch": "2.13.0+cpu"})
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["torch==2.13.0+cpu", "torchvision==0.28.0"]


def test_constraints_text_refuses_garbage(setup_module):
    with pytest.raises(setup_module.SetupError):
        setup_module.constraints_text({"torch": "2.1; rm -rf /"})


def _tiny_wheel(folder: Path, name: str, version: str) -> None:
    """A minimal valid wheel, so pip's resolver can be asked questions offline."""
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as archive:
        for arcname, text in files.items():
            archive.writestr(arcname, text)
        archive.writestr(f"{dist}/RECORD", "".join(f"{n},,\n" for n in files) + f"{dist}/RECORD,,\n")


def _pip_dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(tmp_path),
         "--quiet", "--report", "-", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_constraints_file_is_honoured_by_pip(setup_module, tmp_path):
    """The file we write is one pip reads, and it keeps the pinned version against a newer one."""
    import json

    for version in ("1.0", "2.0"):
        _tiny_wheel(tmp_path, "lfpinned", version)
    path = tmp_path / "lora_factory_constraints.txt"
    setup_module.write_text_atomic(path, setup_module.constraints_text({"lfpinned": "1.0"}))

    free = _pip_dry_run(tmp_path, "lfpinned")
    assert free.returncode == 0, free.stderr
    assert json.loads(free.stdout)["install"][0]["metadata"]["version"] == "2.0"

    pinned = _pip_dry_run(tmp_path, "-c", str(path), "lfpinned")
    assert pinned.returncode == 0, pinned.stderr
    assert json.loads(pinned.stdout)["install"][0]["metadata"]["version"] == "1.0"

    refused = _pip_dry_run(tmp_path, "-c", str(path), "lfpinned==2.0")
    assert refused.returncode != 0


def test_parse_installed_versions(setup_module):
    out = "torch=2.13.0+cpu\ntorchvision=-\ntorchaudio=2.11.0\nnoise line\nother=1.0\n"
    assert setup_module.parse_installed_versions(out) == {"torch": "2.13.0+cpu", "torchaudio": "2.11.0"}
    assert setup_module.parse_installed_versions("torch=-\n") == {}


def test_probe_script_reads_this_interpreter(setup_module):
    done = subprocess.run([sys.executable, "-c", setup_module.PROBE_SCRIPT], capture_output=True, text=True,
                          timeout=120)
    versions = setup_module.parse_installed_versions(done.stdout)
    import torch  # the test venv has a working torch: the probe must see it

    assert versions.get("torch") == torch.__version__


def test_package_spec(setup_module):
    root = Path("/repo")
    assert setup_module.package_spec(root, []) == str(root)
    assert setup_module.package_spec(root, ["test"]) == f"{root}[test]"
    assert setup_module.package_spec(root, ["test", "speed"]) == f"{root}[test,speed]"


def test_the_test_set_up_installs_every_extra_the_tests_need(setup_module):
    """tests/cluster run against a real Ray: ``--test`` installs ``[cluster]`` as well as ``[test]``."""
    pyproject = (Path(setup_module.__file__).parent / "pyproject.toml").read_text(encoding="utf-8")
    extras = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    declared = {line.split("=", 1)[0].strip(): line.split("=", 1)[1] for line in extras.splitlines() if "= [" in line}
    assert setup_module.TEST_EXTRAS == ("test", "cluster")
    assert all(extra in declared for extra in setup_module.TEST_EXTRAS)
    assert '"ray[train]' in declared["cluster"]


# -- paths, ports, guards ----------------------------------------------------------------------------
def test_venv_paths_per_platform(setup_module):
    venv = Path("v")
    assert setup_module.venv_python(venv, "Windows") == venv / "Scripts" / "python.exe"
    assert setup_module.venv_python(venv, "Linux") == venv / "bin" / "python"
    assert setup_module.venv_executable(venv, "lora-factory", "Windows") == venv / "Scripts" / "lora-factory.exe"
    assert setup_module.venv_executable(venv, "lora-factory", "Darwin") == venv / "bin" / "lora-factory"


def test_setup_log_path(setup_module, tmp_path):
    path = setup_module.setup_log_path(tmp_path, datetime(2025, 3, 4, 5, 6, 7))
    assert path == tmp_path / "logs" / "setup_20250304_050607.log"


def test_server_port(setup_module):
    assert setup_module.server_port({}) == 8081
    assert setup_module.server_port({"LORA_FACTORY_PORT": "9000"}) == 9000
    for bad in ("0", "70000", "abc", "-1"):
        with pytest.raises(setup_module.SetupError):
            setup_module.server_port({"LORA_FACTORY_PORT": bad})


def test_packaging_invocation_is_refused(setup_module):
    assert setup_module.is_packaging_invocation(["egg_info"])
    assert setup_module.is_packaging_invocation(["bdist_wheel", "-d", "x"])
    assert not setup_module.is_packaging_invocation(["--test", "--no-start"])
    done = subprocess.run([sys.executable, str(REPO / "setup.py"), "egg_info"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "hatchling" in done.stderr


def test_pyproject_build_backend_never_runs_setup_py():
    """hatchling builds the package; a setuptools backend would execute setup.py."""
    import tomllib  # Python >= 3.11 in the test venv

    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["build-system"]["build-backend"] == "hatchling.build"


def test_find_chromium(setup_module):
    assert setup_module.find_chromium("Windows", which=lambda name: "C:/x") is None
    # Linux: the lookup falls back to PATH when the Debian paths are absent
    found = setup_module.find_chromium("Linux", which=lambda name: f"/opt/{name}" if name == "chromium" else None)
    assert found in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/opt/chromium")
    assert "apt-get install chromium" in setup_module.browser_hint("Linux", Path("py"))
    assert "playwright install chromium" in setup_module.browser_hint("Windows", Path("py"))


def test_write_text_atomic_replaces_whole_file(setup_module, tmp_path):
    target = tmp_path / "sub" / "marker"
    setup_module.write_text_atomic(target, "one")
    setup_module.write_text_atomic(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert [p.name for p in target.parent.iterdir()] == ["marker"]


def test_wait_until_answers_gives_up_on_a_closed_port(setup_module):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert setup_module.wait_until_answers(f"http://127.0.0.1:{port}/", timeout=0.6, interval=0.1) is False


def test_wait_until_answers_counts_any_http_status(setup_module):
    import http.server
    import threading

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/utils/paths"
        assert setup_module.wait_until_answers(url, timeout=5) is True
    finally:
        server.shutdown()


# -- launchers, CI and README stay in step ------------------------------------------------------------
README_TEST_COMMAND = "python3 setup.py --test --no-start && .venv/bin/python -m pytest -q"


def test_readme_ci_and_launchers_agree():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert README_TEST_COMMAND in readme
    assert "python3 setup.py --test --no-start" in ci and ".venv/bin/python -m pytest -q" in ci
    assert ci.index("phase ruff .venv/bin/ruff check .") < ci.index("phase pytest .venv/bin/python -m pytest -q")
    for launcher in ("run_lora.sh", "run_lora.bat"):
        text = (REPO / launcher).read_text(encoding="utf-8")
        assert "lora_factory_setup_ok" in text, launcher  # the marker setup.py writes (MARKER_NAME)
        assert "LORA_FACTORY_PORT" in text and "8081" in text and "127.0.0.1" in text, launcher
    assert "--wait-for-server" in (REPO / "run_lora.sh").read_text(encoding="utf-8")


def test_launcher_marker_name_matches_setup(setup_module):
    assert setup_module.MARKER_NAME == "lora_factory_setup_ok"
    assert setup_module.CONSTRAINTS_NAME == "lora_factory_constraints.txt"


@pytest.mark.skipif(sys.platform.startswith("win"), reason="bash scripts")
def test_shell_scripts_parse_and_are_executable():
    import os
    import shutil

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    for script in ("run_lora.sh", ".ci/run"):
        path = REPO / script
        assert os.access(path, os.X_OK), f"{script} is not executable"
        done = subprocess.run([bash, "-n", str(path)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr


def test_bat_has_crlf_line_endings():
    """cmd.exe mis-reads labels and blocks in a batch file saved with bare LF line endings."""
    data = (REPO / "run_lora.bat").read_bytes()
    assert data.count(b"\n") > 10
    assert data.count(b"\r\n") == data.count(b"\n")


def test_source_built_wheels_are_cached_per_interpreter(setup_module, tmp_path):
    assert setup_module.wheel_cache_dir({}, tmp_path) == tmp_path / ".cache" / "lora-factory" / "wheels"
    assert setup_module.wheel_cache_dir({"LORA_FACTORY_WHEEL_CACHE": str(tmp_path / "w")}, tmp_path) == tmp_path / "w"
    requirement = setup_module.LLAMA_CPP_REQUIREMENT
    version = requirement.split("==")[1]
    assert setup_module.cached_wheel(tmp_path, requirement, "cp312") is None
    other = tmp_path / f"llama_cpp_python-{version}-cp311-cp311-linux_x86_64.whl"
    other.write_bytes(b"")
    assert setup_module.cached_wheel(tmp_path, requirement, "cp312") is None  # another Python's build
    mine = tmp_path / f"llama_cpp_python-{version}-cp312-cp312-linux_x86_64.whl"
    mine.write_bytes(b"")
    assert setup_module.cached_wheel(tmp_path, requirement, "cp312") == mine
    assert setup_module.cached_wheel(tmp_path, "llama-cpp-python==0.0.1", "cp312") is None


def test_compile_command_writes_the_bytecode_even_where_python_is_told_not_to(setup_module, tmp_path):
    """Where PYTHONDONTWRITEBYTECODE is set no process writes bytecode for the editable package, so set-up
    writes it once: every later process reads it instead of compiling each module from source."""
    package = tmp_path / "lora_factory" / "core"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("", encoding="utf-8")
    (package / "module.py").write_text("VALUE = 1\n", encoding="utf-8")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    subprocess.run(setup_module.compile_command(Path(sys.executable), tmp_path), check=True, env=env)
    tag = sys.implementation.cache_tag
    assert (package / "__pycache__" / f"module.{tag}.pyc").is_file()
    assert (package.parent / "__pycache__" / f"__init__.{tag}.pyc").is_file()
