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
