from __future__ import annotations

from backend.cli import main

raise SystemExit(main())
