"""The operator's entry point: what starting it imports."""

from __future__ import annotations

import subprocess
import sys


def test_operator_knows_nothing_of_torch() -> None:
    """The operator image has no torch: importing the operator must not need it (a fresh interpreter)."""
    code = (
        "import sys, autovision_operator.__main__\n"
        "core_only = ('torch', 'autovision.train', 'autovision.export', 'autovision.pipeline')\n"
        "print(sorted(m for m in sys.modules if m.startswith(core_only)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
