"""One-shot environment set-up for LoRA Factory: ``python setup.py``.

Why this file exists (and why it is *not* a setuptools script): users on Windows and Linux should get
a working environment with one command. The package itself is built by hatchling from
``pyproject.toml``, which never executes this file; if a tool still tries to run it as a setuptools
script (``setup.py egg_info`` ...), it refuses loudly instead of doing something surprising.

What it does, in order, logging everything to ``logs/setup_YYYYMMDD_HHMMSS.log``:

1. checks Python >= 3.10;
2. creates ``.venv`` (or reuses it);
3. installs torch FIRST, the build that fits the machine (CUDA wheel index chosen from the driver's
   CUDA version that ``nvidia-smi`` reports, CPU otherwise), because installing the package first would
   let pip pull a multi-GB CUDA build as a dependency. A torch that already works in the venv is kept;
4. pins the installed torch in ``.venv/lora_factory_constraints.txt`` and passes it with ``-c`` to
   every later pip call, so nothing installed afterwards can replace the user's torch;
5. installs the package (``pip install -e .`` plus extras: ``[test]`` with ``--test``) and, with
   ``--with-speedups``, tries xformers / flash-attn / triton one by one without failing on them;
6. writes the marker ``.venv/lora_factory_setup_ok`` that ``run_lora.sh`` / ``run_lora.bat`` check;
7. starts the server and opens the browser, unless ``--no-start``.

Only the standard library is used: this runs before any virtual environment exists. Everything with a
decision in it is a pure function so that ``tests/test_setup_script.py`` can check it.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIN_PYTHON = (3, 10)
VENV_NAME = ".venv"
MARKER_NAME = "lora_factory_setup_ok"
CONSTRAINTS_NAME = "lora_factory_constraints.txt"
DEFAULT_PORT = 8081
# The torch release the product is tested with. ``--torch-version ""`` lets pip pick the newest.
DEFAULT_TORCH_VERSION = "2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
# (minimum driver CUDA version, wheel tag), newest first. A driver runs any wheel built for a CUDA
# version <= its own, so the first entry the driver reaches is the best choice.
CUDA_WHEEL_TAGS: tuple[tuple[tuple[int, int], str], ...] = (
    ((13, 0), "cu130"),
    ((12, 8), "cu128"),
    ((12, 6), "cu126"),
    ((11, 8), "cu118"),
)
# Packages that ride along with torch and must not be swapped under it either.
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
SPEEDUP_PACKAGES = ("xformers", "flash-attn", "triton")
# Sub-commands setuptools / old pip would pass when they mistake this file for a build script.
PACKAGING_COMMANDS = frozenset(
    {"egg_info", "bdist_wheel", "sdist", "develop", "install", "build", "build_ext", "build_py", "dist_info",
     "editable_wheel", "bdist_egg"}
)


class SetupError(Exception):
    """A set-up failure with a Japanese and an English message (the product's convention).

    The product's ``LoRAFactoryError`` cannot be used here: this runs before the package is installed.
    """

    def __init__(self, code: str, message_ja: str, message_en: str) -> None:
        super().__init__(f"[{code}] {message_en}")
        self.code = code
        self.message_ja = message_ja
        self.message_en = message_en


# ---------------------------------------------------------------------------------------------------
# pure decisions (tested in tests/test_setup_script.py)
# ---------------------------------------------------------------------------------------------------
def check_python(version_info: Sequence[int]) -> None:
    """Refuse a Python older than :data:`MIN_PYTHON` with a message that says what to install."""
    have = tuple(version_info[:2])
    if have < MIN_PYTHON:
        need = ".".join(str(p) for p in MIN_PYTHON)
        got = ".".join(str(p) for p in have)
        raise SetupError(
            "PYTHON_TOO_OLD",
            f"Python {need} 以上が必要です(現在 {got})。https://www.python.org/downloads/ から新しい Python を"
            f"インストールし、そのPythonで setup.py を実行してください。",
            f"Python {need} or newer is required (this is {got}). Install a newer Python from "
            f"https://www.python.org/downloads/ and run setup.py with it.",
        )


def parse_cuda_version(nvidia_smi_output: str) -> tuple[int, int] | None:
    """The driver's CUDA version from ``nvidia-smi`` output ("CUDA Version: 12.8"), or None."""
    match = re.search(r"CUDA\s+Version\s*:\s*(\d+)\.(\d+)", nvidia_smi_output or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))


def choose_cuda_tag(cuda_version: tuple[int, int] | None) -> str | None:
    """The newest PyTorch CUDA wheel tag the driver can run, or None when it is too old / absent."""
    if cuda_version is None:
        return None
    for minimum, tag in CUDA_WHEEL_TAGS:
        if cuda_version >= minimum:
            return tag
    return None


@dataclass
class TorchPlan:
    """How torch will be installed: the requirement, the wheel index (None = pip's own sources), why."""

    requirement: str
    index_url: str | None
    flavour: str  # "cpu", "cu128", ... or "default" (whatever pip's sources give: macOS, offline mirror)
    reasons: list[str] = field(default_factory=list)


def torch_requirement(version: str) -> str:
    """``torch==X`` for a pinned version, plain ``torch`` when the version is left empty."""
    version = (version or "").strip()
    return f"torch=={version}" if version else "torch"


def plan_torch(
    system: str,
    nvidia_smi_output: str | None,
    force_cpu: bool,
    torch_version: str,
    index_reachable: Callable[[str], bool],
    index_override: str | None = None,
) -> TorchPlan:
    """Choose the torch build for this machine.

    :param system: ``platform.system()`` (``Linux``, ``Windows``, ``Darwin``).
    :param nvidia_smi_output: what ``nvidia-smi`` printed, or None when it is absent or failed.
    :param force_cpu: ``--cpu``: a CPU build even with a GPU present.
    :param torch_version: the version to pin, "" for the newest.
    :param index_reachable: tells whether a wheel index answers (a network probe in real use).
    :param index_override: ``--torch-index`` / ``LORA_FACTORY_TORCH_INDEX``: used as given.

    macOS wheels on PyPI are the right ones already (CPU / Metal). On Linux, PyPI's torch is a CUDA
    build of several GB, so a CPU machine uses the CPU index; when that index cannot be reached (an
    offline mirror, a local wheel folder), pip's configured sources are used with the pinned version.
    """
    requirement = torch_requirement(torch_version)
    if index_override:
        return TorchPlan(requirement, index_override, "custom", [f"index given by the user: {index_override}"])
    if system == "Darwin":
        return TorchPlan(requirement, None, "default", ["macOS: PyPI's wheels (CPU / Metal) are the right build"])
    reasons: list[str] = []
    flavour = "cpu"
    if force_cpu:
        reasons.append("--cpu given: CPU build")
    elif nvidia_smi_output is None:
        reasons.append("nvidia-smi not found or failed: CPU build")
    else:
        cuda = parse_cuda_version(nvidia_smi_output)
        tag = choose_cuda_tag(cuda)
        if tag is None:
            shown = "unknown" if cuda is None else f"{cuda[0]}.{cuda[1]}"
            reasons.append(f"driver CUDA version {shown} is too old or unreadable for current wheels: CPU build")
        else:
            flavour = tag
            reasons.append(f"driver CUDA version {cuda[0]}.{cuda[1]}: wheel index {tag}")
    index = f"{PYTORCH_INDEX}/{flavour}"
    if index_reachable(index):
        return TorchPlan(requirement, index, flavour, reasons)
    reasons.append(f"{index} is unreachable: using pip's configured sources (mirror / local wheels)")
    return TorchPlan(requirement, None, "default" if flavour != "cpu" else "cpu", reasons)


def pip_install_command(
    python: Path | str,
    packages: Sequence[str],
    constraints: Path | None = None,
    index_url: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``python -m pip install ...`` with the torch constraints (``-c``) and an optional index.

    ``-c`` on the command line adds to the constraints pip already has from its configuration (an
    environment variable ``PIP_CONSTRAINT`` would replace them), so it is the way used here.
    """
    cmd = [str(python), "-m", "pip", "install"]
    if index_url:
        cmd += ["--index-url", index_url]
    if constraints is not None:
        cmd += ["-c", str(constraints)]
    cmd += list(extra)
    cmd += list(packages)
    return cmd


def constraints_text(pins: dict[str, str]) -> str:
    """The constraints file: one ``name==version`` line per package already installed and working."""
    lines = [
        "# Written by LoRA Factory's setup.py: these packages were installed and working before the",
        "# package was installed; every later pip call uses this file (-c) so nothing replaces them.",
        "# Delete a line (or run setup.py --reinstall-torch) to let pip change that package.",
    ]
    for name in sorted(pins):
        version = pins[name].strip()
        if not re.fullmatch(r"[A-Za-z0-9_.+!-]+", version):
            raise SetupError(
                "BAD_VERSION",
                f"{name} のバージョン「{version}」を読めません。",
                f"Cannot read the version '{version}' of {name}.",
            )
        lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"


def parse_installed_versions(output: str) -> dict[str, str]:
    """Read ``name=version`` lines printed by :data:`PROBE_SCRIPT` (a probe inside the venv)."""
    versions: dict[str, str] = {}
    for line in (output or "").splitlines():
        if "=" not in line:
            continue
        name, _, version = line.strip().partition("=")
        if name in TORCH_FAMILY and version and version != "-":
            versions[name] = version
    return versions


# Run with the venv's python: imports torch for real (a torch that does not import is not "working").
PROBE_SCRIPT = """
import importlib
for name in ("torch", "torchvision", "torchaudio"):
    try:
        module = importlib.import_module(name)
        print(f"{name}={module.__version__}")
    except Exception:
        print(f"{name}=-")
"""


# what --test installs: the test tools, and Ray for the cluster tests (tests/cluster run against a local Ray)
TEST_EXTRAS = ("test", "cluster")


def package_spec(root: Path, extras: Sequence[str]) -> str:
    """The editable requirement: the repository path with its extras, ``/repo[test]``."""
    return str(root) + (f"[{','.join(extras)}]" if extras else "")


def venv_python(venv_dir: Path, system: str) -> Path:
    """The venv's interpreter: ``Scripts\\python.exe`` on Windows, ``bin/python`` elsewhere."""
    if system == "Windows":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


def venv_executable(venv_dir: Path, name: str, system: str) -> Path:
    """A console script installed in the venv (``lora-factory``)."""
    if system == "Windows":
        return venv_dir / "Scripts" / f"{name}.exe"
    return venv_dir / "bin" / name


def setup_log_path(root: Path, now: datetime) -> Path:
    """``logs/setup_YYYYMMDD_HHMMSS.log`` under the repository."""
    return root / "logs" / f"setup_{now.strftime('%Y%m%d_%H%M%S')}.log"


def find_chromium(system: str, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """Debian's chromium, which the UI tests drive (Linux only; elsewhere playwright brings its own)."""
    if system != "Linux":
        return None
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).is_file():
            return candidate
    return which("chromium") or which("chromium-browser")


def browser_hint(system: str, python: Path) -> str:
    """How to get a browser for the UI tests, in both languages."""
    if system == "Linux":
        return (
            "Chromium が見つかりません。UI テストには Debian の chromium が必要です: sudo apt-get install chromium\n"
            "Chromium was not found. The UI tests need Debian's chromium: sudo apt-get install chromium\n"
            "(or run: python3 setup.py --test --install-browser, as root on Debian)"
        )
    return (
        f"UI テスト用のブラウザ / browser for the UI tests: {python} -m playwright install chromium"
    )


def is_packaging_invocation(argv: Sequence[str]) -> bool:
    """True when a packaging tool runs this file as a setuptools script (``setup.py egg_info``)."""
    return any(arg in PACKAGING_COMMANDS for arg in argv)


def server_port(env: Mapping[str, str]) -> int:
    """The port from ``LORA_FACTORY_PORT`` (default 8081), checked to be a real port number."""
    raw = env.get("LORA_FACTORY_PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SetupError(
            "INVALID_PORT",
            f"LORA_FACTORY_PORT「{raw}」はポート番号(1-65535)ではありません。",
            f"LORA_FACTORY_PORT '{raw}' is not a port number (1-65535).",
        )
    return int(raw)


def marker_text(torch_version: str, extras: Sequence[str], now: datetime) -> str:
    """What the marker records: when, with which torch and extras (read by people, not parsed)."""
    return (
        f"setup completed {now.isoformat(timespec='seconds')}\n"
        f"python {platform.python_version()}\ntorch {torch_version}\nextras {','.join(extras) or '-'}\n"
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, then rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------
# side effects: logging, running commands, probing
# ---------------------------------------------------------------------------------------------------
class SetupLog:
    """Everything to the console and to the log file, so a failed set-up can be sent as one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()

    def __call__(self, message: str = "") -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        with self._lock:
            for line in str(message).splitlines() or [""]:
                self._file.write(f"{stamp} {line}\n")
                print(line, flush=True)
            self._file.flush()

    def raw(self, line: str) -> None:
        """A line of a sub-process's output (kept as is)."""
        with self._lock:
            self._file.write(line if line.endswith("\n") else line + "\n")
            self._file.flush()
            try:
                print(line.rstrip("\n"), flush=True)
            except UnicodeEncodeError:  # a Windows console without UTF-8
                print(line.rstrip("\n").encode("ascii", "replace").decode("ascii"), flush=True)

    def close(self) -> None:
        self._file.close()


def run_logged(cmd: Sequence[str], log: SetupLog, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> int:
    """Run a command, streaming its output into the log; returns the exit code."""
    log(f"$ {subprocess.list2cmdline([str(c) for c in cmd])}")
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            [str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd,
            env=env, text=True, encoding="utf-8", errors="replace",
        )
    except OSError as exc:
        log(f"  cannot start: {exc}")
        return 127
    assert proc.stdout is not None
    for line in proc.stdout:
        log.raw(line)
    code = proc.wait()
    log(f"  -> exit {code} in {time.monotonic() - started:.1f} s")
    return code


def capture(cmd: Sequence[str], timeout: float = 60) -> tuple[int, str]:
    """Run a short command and return (exit code, output); (127, "") when it cannot start."""
    try:
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                              encoding="utf-8", errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return 127, ""
    return done.returncode, (done.stdout or "") + (done.stderr or "")


def nvidia_smi_output() -> str | None:
    """What ``nvidia-smi`` prints, or None when there is no NVIDIA driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    code, out = capture([exe], timeout=30)
    return out if code == 0 else None


def url_reachable(url: str, timeout: float = 5.0) -> bool:
    """True when the URL answers at all (any HTTP status): the index is there, pip can use it."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def installed_torch(python: Path) -> dict[str, str]:
    """torch / torchvision / torchaudio versions that import in the venv ({} when torch does not)."""
    if not python.exists():
        return {}
    code, out = capture([python, "-c", PROBE_SCRIPT], timeout=300)
    return parse_installed_versions(out) if code == 0 else {}


def wait_until_answers(url: str, timeout: float = 120.0, interval: float = 0.5,
                       should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Poll ``url`` until the server answers (any HTTP status counts) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not should_stop():
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except (OSError, ValueError):
            time.sleep(interval)
    return False


def open_browser_when_ready(port: int, timeout: float = 120.0,
                            should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Open the UI once the server answers; never fails (a machine without a browser is fine)."""
    base = f"http://127.0.0.1:{port}"
    if not wait_until_answers(f"{base}/utils/paths", timeout=timeout, should_stop=should_stop):
        print(f"サーバーが応答しません / the server did not answer at {base}", flush=True)
        return False
    print(f"LoRA Factory: {base}", flush=True)
    if os.environ.get("LORA_FACTORY_NO_BROWSER"):
        return False
    try:
        return bool(webbrowser.open(base))
    except Exception:  # noqa: BLE001 - no browser, no display: the URL was printed above
        return False


# ---------------------------------------------------------------------------------------------------
# the steps
# ---------------------------------------------------------------------------------------------------
def create_venv(venv_dir: Path, python: Path, log: SetupLog) -> None:
    """Create the venv (or reuse a working one)."""
    if python.exists():
        log(f"既存の仮想環境を使います / reusing {venv_dir}")
        return
    log(f"仮想環境を作成します / creating {venv_dir}")
    if run_logged([sys.executable, "-m", "venv", str(venv_dir)], log) != 0 or not python.exists():
        raise SetupError(
            "VENV_FAILED",
            "仮想環境を作れませんでした。Debian/Ubuntu では: sudo apt-get install python3-venv",
            "Could not create the virtual environment. On Debian/Ubuntu: sudo apt-get install python3-venv",
        )


def ensure_pip(python: Path, log: SetupLog) -> None:
    """Editable installs from pyproject.toml (PEP 660) need pip >= 21.3; upgrade an older pip."""
    code, out = capture([python, "-m", "pip", "--version"])
    match = re.search(r"pip (\d+)\.(\d+)", out)
    if code == 0 and match and (int(match.group(1)), int(match.group(2))) >= (21, 3):
        log(out.strip())
        return
    if run_logged([python, "-m", "pip", "install", "--upgrade", "pip"], log) != 0:
        raise SetupError("PIP_FAILED", "pip を更新できませんでした。ログを確認してください。",
                         "Could not upgrade pip; see the log.")


def install_torch(python: Path, args: argparse.Namespace, log: SetupLog) -> dict[str, str]:
    """Keep a working torch, or install the build :func:`plan_torch` picks; returns the pins."""
    pins = installed_torch(python)
    if pins.get("torch") and not args.reinstall_torch:
        log(f"動作する torch {pins['torch']} を維持します / keeping the working torch {pins['torch']}")
        return pins
    smi = None if args.cpu else nvidia_smi_output()
    if smi:
        log("nvidia-smi:\n" + smi.strip())
    plan = plan_torch(
        platform.system(), smi, args.cpu, args.torch_version, url_reachable,
        index_override=args.torch_index or os.environ.get("LORA_FACTORY_TORCH_INDEX") or None,
    )
    for reason in plan.reasons:
        log(f"torch: {reason}")
    log(f"torch をインストールします / installing {plan.requirement} ({plan.flavour})")
    if args.reinstall_torch and pins:
        # Uninstall first: "torch==2.13.0" is already satisfied by 2.13.0+cpu, pip would keep it.
        run_logged([python, "-m", "pip", "uninstall", "-y", *sorted(pins)], log)
    extra: list[str] = []
    cmd = pip_install_command(python, [plan.requirement], index_url=plan.index_url, extra=extra)
    code = run_logged(cmd, log)
    if code != 0 and plan.index_url and plan.requirement != "torch":
        # The index may not carry the pinned release for this CUDA tag: its newest torch still fits.
        log(f"{plan.requirement} が {plan.index_url} にありません: 最新版を試します / trying the newest torch there")
        code = run_logged(pip_install_command(python, ["torch"], index_url=plan.index_url, extra=extra), log)
    if code != 0:
        raise SetupError(
            "TORCH_INSTALL_FAILED",
            "torch をインストールできませんでした。ネットワークを確認するか、--cpu / --torch-index を試してください。",
            "Could not install torch. Check the network, or try --cpu / --torch-index URL.",
        )
    pins = installed_torch(python)
    if not pins.get("torch"):
        raise SetupError("TORCH_BROKEN", "インストールした torch を import できません。ログを確認してください。",
                         "The installed torch does not import; see the log.")
    code, out = capture([python, "-c", "import torch; print('cuda available:', torch.cuda.is_available())"])
    log(f"torch {pins['torch']} - {out.strip()}")
    return pins


def install_package(python: Path, constraints: Path, extras: Sequence[str], log: SetupLog) -> None:
    """``pip install -e .[extras]`` with the torch pins, so the dependencies never replace torch."""
    cmd = pip_install_command(python, ["-e", package_spec(ROOT, extras)], constraints=constraints)
    if run_logged(cmd, log, cwd=ROOT) != 0:
        raise SetupError(
            "PACKAGE_INSTALL_FAILED",
            "LoRA Factory をインストールできませんでした。ログを確認してください。",
            "Could not install LoRA Factory; see the log.",
        )


def compile_command(python: Path, root: Path) -> list[str]:
    """``compileall`` over the package's own modules (all cores, quiet).

    Why: an editable install (``pip install -e .``) leaves the package's modules uncompiled, unlike the
    packages pip installs. Where ``PYTHONDONTWRITEBYTECODE`` is set (container images and CI runners often
    set it), no process ever writes their bytecode, so the server, every CLI call and every job worker
    compiled them from source again: 0.3-0.5 s of CPU each. Compiled here once, they are only read. A module
    edited later is newer than its bytecode and is compiled from source again, as Python always does."""
    return [str(python), "-m", "compileall", "-q", "-j", "0", str(root / "lora_factory")]


def compile_package(python: Path, log: SetupLog) -> None:
    """Bytecode for the package's modules (see :func:`compile_command`); a failure only costs speed."""
    if run_logged(compile_command(python, ROOT), log, cwd=ROOT) != 0:
        log("バイトコードの事前コンパイルに失敗しました(動作には影響しません) / "
            "could not precompile the bytecode (only start-up speed is affected)")


def install_speedups(python: Path, constraints: Path, log: SetupLog) -> list[str]:
    """Try each optional accelerator; a failure is logged and skipped (they are never required)."""
    installed = []
    for package in SPEEDUP_PACKAGES:
        # Binary wheels only: flash-attn from source compiles for an hour and needs nvcc.
        cmd = pip_install_command(python, [package], constraints=constraints, extra=["--only-binary", ":all:"])
        if run_logged(cmd, log) == 0:
            installed.append(package)
        else:
            log(f"{package} はスキップします(任意) / skipping {package} (optional)")
    return installed


# Built from source (PyPI has no CPU wheel for every platform); the test set-up builds it once per
# machine (~7 min on 2 cores) and keeps the wheel, so later set-ups and CI runs install it in seconds.
LLAMA_CPP_REQUIREMENT = "llama-cpp-python==0.3.36"
SOURCE_BUILT_TEST_PACKAGES = (LLAMA_CPP_REQUIREMENT,)


def wheel_cache_dir(env: Mapping[str, str], home: Path) -> Path:
    """Where source-built wheels are kept: ``$LORA_FACTORY_WHEEL_CACHE`` or ``~/.cache/lora-factory/wheels``."""
    return Path(env["LORA_FACTORY_WHEEL_CACHE"]) if env.get("LORA_FACTORY_WHEEL_CACHE") else \
        home / ".cache" / "lora-factory" / "wheels"


def cached_wheel(cache: Path, requirement: str, python_tag: str) -> Path | None:
    """A wheel in ``cache`` for ``name==version`` built for this interpreter (``cp312``), or None."""
    name, _, version = requirement.partition("==")
    stem = name.replace("-", "_")
    for wheel in sorted(cache.glob(f"{stem}-{version or '*'}-*.whl")):
        if f"-{python_tag}-" in wheel.name or "-py3-" in wheel.name:
            return wheel
    return None


def install_source_built(python: Path, constraints: Path, log: SetupLog) -> list[str]:
    """The test packages that compile from source (llama-cpp-python), built once into the wheel cache."""
    cache = wheel_cache_dir(os.environ, Path.home())
    cache.mkdir(parents=True, exist_ok=True)
    code, out = capture([python, "-c", "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"])
    tag = out.strip() or f"cp{sys.version_info[0]}{sys.version_info[1]}"
    installed = []
    for requirement in SOURCE_BUILT_TEST_PACKAGES:
        wheel = cached_wheel(cache, requirement, tag)
        if wheel is None:
            log(f"{requirement} をソースからビルドします(数分) / building {requirement} from source (minutes), "
                f"cached in {cache}")
            run_logged([str(python), "-m", "pip", "wheel", "--no-deps", "--no-binary", requirement.split("==")[0],
                        requirement, "-w", str(cache)], log)
            wheel = cached_wheel(cache, requirement, tag)
        if wheel is None or run_logged(pip_install_command(python, [str(wheel)], constraints=constraints), log) != 0:
            log(f"{requirement} を入れられませんでした(GGUF の検査テストは失敗します) / could not install {requirement}: "
                "the GGUF tests that load llama.cpp will fail with this message")
            continue
        installed.append(requirement)
    return installed


def check_browser(args: argparse.Namespace, python: Path, log: SetupLog) -> None:
    """With --test on Linux: Debian's chromium for the UI tests; apt only with --install-browser as root."""
    system = platform.system()
    if system == "Linux":
        found = find_chromium(system)
        if found:
            log(f"chromium: {found}")
            return
        is_root = hasattr(os, "geteuid") and os.geteuid() == 0
        if args.install_browser and is_root and Path("/etc/debian_version").exists():
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            if run_logged(["apt-get", "update"], log, env=env) == 0:
                run_logged(["apt-get", "install", "-y", "chromium"], log, env=env)
            if find_chromium(system):
                return
        log(browser_hint(system, python))
        return
    if args.install_browser:
        run_logged([python, "-m", "playwright", "install", "chromium"], log)
    else:
        log(browser_hint(system, python))


def start_server(venv_dir: Path, port: int, log: SetupLog) -> int:
    """Run the server in the foreground; open the browser from a thread once it answers."""
    exe = venv_executable(venv_dir, "lora-factory", platform.system())
    cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log(f"サーバーを起動します / starting the server: http://127.0.0.1:{port}  (Ctrl+C で停止 / to stop)")
    log.close()
    proc = subprocess.Popen(cmd, cwd=ROOT)

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # A TERM to this script must stop the server too, not leave it orphaned.
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _interrupt)
    opener = threading.Thread(target=open_browser_when_ready, args=(port,),
                              kwargs={"should_stop": lambda: proc.poll() is not None}, daemon=True)
    opener.start()
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="setup.py",
        description="LoRA Factory の環境構築 / set up LoRA Factory's environment (.venv, torch, the package)",
    )
    parser.add_argument("--test", action="store_true", help="テスト用の追加パッケージも / also install [test]")
    parser.add_argument("--no-start", action="store_true", help="最後にサーバーを起動しない / do not start the server")
    parser.add_argument("--cpu", action="store_true", help="GPU があっても CPU 版 torch / force a CPU torch")
    parser.add_argument("--with-speedups", action="store_true",
                        help="xformers / flash-attn / triton を試す(失敗しても続行) / try optional accelerators")
    parser.add_argument("--install-browser", action="store_true",
                        help="--test: Debian で root なら apt で chromium を入れる / install chromium with apt")
    parser.add_argument("--reinstall-torch", action="store_true",
                        help="動作中の torch も入れ直す / replace even a working torch")
    parser.add_argument("--torch-version", default=os.environ.get("LORA_FACTORY_TORCH_VERSION", DEFAULT_TORCH_VERSION),
                        help=f"torch version to install (default {DEFAULT_TORCH_VERSION}; '' = newest)")
    parser.add_argument("--torch-index", default=None, help="torch wheel index URL (overrides the automatic choice)")
    parser.add_argument("--wait-for-server", action="store_true",
                        help="(used by run_lora.*) wait until the server on LORA_FACTORY_PORT answers; exit 0 or 1")
    return parser.parse_args(list(argv))


def run_setup(args: argparse.Namespace, log: SetupLog) -> Path:
    """All steps up to the marker; returns the venv folder."""
    started = time.monotonic()
    log(f"LoRA Factory setup - Python {platform.python_version()} ({sys.executable}) on "
        f"{platform.system()} {platform.release()} {platform.machine()}")
    log(f"log: {log.path}")
    check_python(sys.version_info)
    venv_dir = ROOT / VENV_NAME
    python = venv_python(venv_dir, platform.system())
    marker = venv_dir / MARKER_NAME
    if marker.exists():
        marker.unlink()  # a set-up that stops half-way must not look complete to run_lora.*
    create_venv(venv_dir, python, log)
    ensure_pip(python, log)
    pins = install_torch(python, args, log)
    constraints = venv_dir / CONSTRAINTS_NAME
    write_text_atomic(constraints, constraints_text(pins))
    log(f"torch を固定しました / pinned in {constraints}: " + ", ".join(f"{k}=={v}" for k, v in sorted(pins.items())))
    extras = list(TEST_EXTRAS) if args.test else []
    install_package(python, constraints, extras, log)
    compile_package(python, log)
    if args.with_speedups:
        done = install_speedups(python, constraints, log)
        log(f"speedups: {', '.join(done) or 'none'}")
    after = installed_torch(python)
    if after.get("torch") != pins.get("torch"):
        raise SetupError("TORCH_REPLACED", "torch が置き換えられました。ログを確認してください。",
                         f"torch changed from {pins.get('torch')} to {after.get('torch')}; see the log.")
    if args.test:
        check_browser(args, python, log)
        install_source_built(python, constraints, log)
    write_text_atomic(marker, marker_text(pins["torch"], extras, datetime.now()))
    log(f"完了しました / done in {time.monotonic() - started:.0f} s")
    return venv_dir


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_packaging_invocation(argv):
        print("setup.py は環境構築スクリプトです。パッケージは pyproject.toml (hatchling) でビルドされます。\n"
              "setup.py is LoRA Factory's environment set-up, not a setuptools script: the package is built "
              "from pyproject.toml (hatchling). Use: pip install -e .", file=sys.stderr)
        return 2
    args = parse_args(argv)
    try:
        if args.wait_for_server:
            port = server_port(os.environ)
            return 0 if wait_until_answers(f"http://127.0.0.1:{port}/utils/paths", timeout=180) else 1
        check_python(sys.version_info)
        port = server_port(os.environ)
    except SetupError as exc:
        print(f"{exc.message_ja}\n{exc.message_en}", file=sys.stderr)
        return 1
    log = SetupLog(setup_log_path(ROOT, datetime.now()))
    try:
        venv_dir = run_setup(args, log)
    except SetupError as exc:
        log(f"エラー [{exc.code}]: {exc.message_ja}")
        log(f"error [{exc.code}]: {exc.message_en}")
        log(f"ログ / log: {log.path}")
        log.close()
        return 1
    except KeyboardInterrupt:
        log("中断しました / interrupted")
        log.close()
        return 130
    if args.no_start:
        log("起動するには / to start: " + ("run_lora.bat" if platform.system() == "Windows" else "./run_lora.sh"))
        log.close()
        return 0
    return start_server(venv_dir, port, log)


if __name__ == "__main__":
    sys.exit(main())
