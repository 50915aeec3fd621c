"""Start-up installs: `python -m tallymalloc` and the TALLYMALLOC_PYTHON .pth hook."""

import os
import subprocess
import sys

SHOW = "import sys, tallymalloc; print(tallymalloc.installed(), sys.argv[1:])"


def run(arguments, env=None, cwd=None):
    environment = dict(os.environ)
    environment.pop("TALLYMALLOC_PYTHON", None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, *arguments], capture_output=True, text=True, env=environment, cwd=cwd
    )


def test_python_m_tallymalloc_runs_a_script_with_its_arguments(tmp_path):
    script = tmp_path / "show.py"
    script.write_text(SHOW + "\nassert __name__ == '__main__'\n")
    result = run(["-m", "tallymalloc", str(script), "one", "--two"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('raw', 'mem', 'obj') ['one', '--two']"


def test_python_m_tallymalloc_runs_a_module_and_reports(tmp_path):
    (tmp_path / "shown.py").write_text(SHOW + "\n")
    result = run(["-m", "tallymalloc", "--report", "-m", "shown", "x"], cwd=tmp_path,
                 env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "('raw', 'mem', 'obj') ['x']"
    assert "live KiB" in result.stderr and "\nobj " in result.stderr


def test_python_m_tallymalloc_without_a_script_prints_usage():
    result = run(["-m", "tallymalloc"])
    assert result.returncode == 2 and "usage: python -m tallymalloc" in result.stderr


def test_python_m_tallymalloc_names_the_library_and_headers_it_carries(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k not in ("TALLYMALLOC_LIB", "LD_PRELOAD")}
    library = run(["-m", "tallymalloc", "--lib"], cwd=tmp_path)
    assert library.returncode == 0, library.stderr
    path = library.stdout.strip()
    assert os.path.isfile(path) and path.endswith("/tallymalloc/libtallymalloc.so"), path
    # The library the package loads is that one, and it runs a program preloaded.
    origin = run(["-c", "import tallymalloc; print(tallymalloc.library_origin())"])
    if "LD_PRELOAD" not in os.environ:
        assert origin.stdout.strip() == path
    preloaded = subprocess.run(
        ["sort", "/etc/passwd"], capture_output=True, text=True,
        env={**environment, "LD_PRELOAD": path, "TALLYMALLOC_STATS": "1"},
    )
    assert preloaded.returncode == 0 and "\nraw " in preloaded.stderr, preloaded.stderr
    include = run(["-m", "tallymalloc", "--include"]).stdout.strip()
    assert sorted(os.listdir(include)) == ["tallymalloc.h", "tallymalloc_api.h"]
    # Another library through TALLYMALLOC_LIB is what --lib names then.
    copy = tmp_path / "libtallymalloc-copy.so"
    copy.write_bytes(open(path, "rb").read())
    other = run(["-m", "tallymalloc", "--lib"], env={"TALLYMALLOC_LIB": str(copy)})
    assert other.stdout.strip() == str(copy), other.stderr


def test_the_environment_variable_installs_in_any_interpreter():
    assert run(["-c", SHOW], env={"TALLYMALLOC_PYTHON": "1"}).stdout.startswith(
        "('raw', 'mem', 'obj')"
    )
    assert run(["-c", SHOW], env={"TALLYMALLOC_PYTHON": "raw,mem"}).stdout.startswith(
        "('raw', 'mem')"
    )
    assert run(["-c", SHOW], env={"TALLYMALLOC_PYTHON": "0"}).stdout.startswith("()")
    assert run(["-c", SHOW]).stdout.startswith("()")


def test_a_bad_environment_value_is_reported_and_start_up_goes_on():
    result = run(["-c", SHOW], env={"TALLYMALLOC_PYTHON": "heap"})
    assert result.returncode == 0 and result.stdout.startswith("()")
    assert "TALLYMALLOC_PYTHON=heap: not installed: unknown CPython domain 'heap'" in result.stderr
