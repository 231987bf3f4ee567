"""Reading the pipeline report a run printed."""
from __future__ import annotations

import re
from typing import Dict


def stage_statuses(printed: str) -> Dict[str, str]:
    """{stage: status} from the report's stage table (a wall time may carry a note in brackets)."""
    rows = re.findall(r"^\| ([a-z-]+) \| ([a-z (),-]+?) \| [\d.]+ s(?: \([^)]*\))? \|", printed, re.M)
    return {name: status for name, status in rows}
