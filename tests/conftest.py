import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

BROWSER_HINT = "browser test skipped"  # the skip reason of every browser test (helpers.require_browser)


# The test files that take longest (`pytest --durations`), longest first: `make test` hands whole files to
# two workers (--dist loadfile --no-loadscope-reorder), and a long file handed out last kept one worker
# busy while the other had nothing left (xdist's own order is by the number of tests in a file).
LONGEST_FIRST = ("test_readme.py", "test_rlhf_four_stages.py", "test_ray.py", "test_errors.py", "test_resume.py",
                 "test_validation.py", "test_embed.py", "test_cli.py", "test_annotate.py", "test_integrity.py",
                 "test_train_lock.py", "test_sweep.py", "test_trainer.py", "test_rlhf_cycle.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_unconfigure(config):
    """A skipped browser test is easy to miss in `-q` output: say so in one line, last."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [r for r in reporter.stats.get("skipped", []) if BROWSER_HINT in str(r.longrepr)]
    if skipped:
        reporter.write_line(
            f"NOTE: {len(skipped)} browser test module(s) skipped: Chromium or playwright is missing "
            "(apt-get install chromium; CI sets CORPUS_REQUIRE_BROWSER=1 and fails instead)", yellow=True, bold=True)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for the whole test session (it takes seconds to start); tests run
    RayExecutor on it (a driver already connected keeps its connection)."""
    ray = pytest.importorskip("ray")
    # Workers import test modules by name (an operator defined in a test), as this process does.
    path = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False,
             runtime_env={"env_vars": {"POLARS_MAX_THREADS": "1", "PYTHONPATH": path}})
    yield ray
    ray.shutdown()
