"""``python -m otel_resilience.cli``."""

from __future__ import annotations

import sys

from otel_resilience.cli import main

sys.exit(main())
