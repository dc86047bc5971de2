from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """The project built as a wheel and installed in a new virtualenv, whose dependencies come
    from the test environment's site-packages (a .pth file) but never the checkout: the
    ``vehicle-jobs`` script and interpreter of an installation, as a cluster would have them."""
    import site
    import subprocess
    import sys

    from jobs.config import PROJECT_ROOT

    root = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(root / "dist"), str(PROJECT_ROOT)], check=True, capture_output=True)  # fmt: skip
    wheel = next((root / "dist").glob("vehicle_event_jobs-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site_packages = next((venv / "lib").glob("python3.*/site-packages"))
    (site_packages / "test-dependencies.pth").write_text(
        "\n".join(p for p in site.getsitepackages() if "site-packages" in p) + "\n"
    )
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True)  # fmt: skip
    return venv
