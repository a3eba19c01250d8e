"""What the trainer's exit status tells its Job, and so the Job's podFailurePolicy.

Kubernetes reads only the number: bad input fails the Job at once (no retry can
fix it), a temporary failure counts against ``backoffLimit`` and the retried pod
resumes from the checkpoints in storage.
"""

from __future__ import annotations

from typing import Final

SUCCESS: Final = 0
# Input no retry can fix: an unreadable source, too few images, a bad spec or weights file.
BAD_INPUT: Final = 2
# Something outside the input failed and may recover (storage unreachable, throttled,
# 5xx): sysexits.h's EX_TEMPFAIL.
TEMPORARY_FAILURE: Final = 75
