"""A backend process around the fault-injecting FakeEngine, for kill/restart tests.

python tests/reliability/backend_proc.py PORT OUTPUT_DIR [STEP_DELAY]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def main(argv: list[str]) -> int:
    import uvicorn
    from api.fake_engine import FakeEngine

    from backend.api.app import create_app
    from backend.settings import Settings

    port, output_dir = int(argv[0]), argv[1]
    step_delay = float(argv[2]) if len(argv) > 2 else 0.0
    settings = Settings(port=port, output_dir=output_dir, keepalive_s=0.2, log_progress=False)
    settings.check()
    app = create_app(settings, FakeEngine(step_delay=step_delay))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
