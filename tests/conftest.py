import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

BROWSER_HINT = "browser test skipped"  # the skip reason of every browser test (helpers.require_browser)


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
