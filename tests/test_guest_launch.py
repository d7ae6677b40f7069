"""How processes started with ``python -S`` find the packages beyond the standard library (h11).

The cgroup v2 guest (tests/guest/) runs the checks with ``python -S`` and those start a whole
minidockerd; monitors start as ``python -S`` too (runtime/launcher.py ``python_argv``). Both must
import the daemon's HTTP layer, which lives in the venv's site-packages, not the standard library.
These run in a second each, on the host; the guest test itself takes minutes.
"""
import os
import subprocess
import sys

from guest.vm import guest_env
from minidocker.runtime.launcher import python_argv

IMPORT_DAEMON = "import minidocker.daemon.main, h11; print(h11.__file__)"


def test_guest_environment_lets_python_S_import_the_daemon():
    p = subprocess.run(["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in guest_env().items()),
                        sys.executable, "-S", "-B", "-c", IMPORT_DAEMON],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]


def test_python_argv_from_a_python_S_process_passes_site_packages_on():
    """A ``-S`` process (the guest's checks, a monitor) that starts the daemon through python_argv:
    the child must find h11 although the site module never ran in either."""
    import h11
    site_dir = os.path.dirname(os.path.dirname(h11.__file__))
    parent = ("import sys, subprocess; from minidocker.runtime.launcher import python_argv; "
              f"sys.exit(subprocess.run(python_argv({IMPORT_DAEMON!r})).returncode)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = f"import sys; sys.path[:0] = {[repo, site_dir]!r}; {parent}"
    p = subprocess.run(["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", sys.executable, "-S", "-B", "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().startswith(site_dir)


def test_python_argv_runs_the_statement_with_arguments():
    p = subprocess.run(python_argv("print(sys.argv[1:])", "a", "b"), capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "['a', 'b']"
