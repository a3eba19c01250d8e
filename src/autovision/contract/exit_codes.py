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
# A rank of the data-parallel final fit died or did not join within the rendezvous
# timeout: the retried pods resume the fit from its last checkpoint (counted against
# backoffLimit); progress.json says RankLost, and so does the TrainingJob.
RANK_LOST: Final = 76
