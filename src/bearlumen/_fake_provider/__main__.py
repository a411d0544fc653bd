"""`python -m bearlumen._fake_provider [--port N]`: the fake provider until interrupted."""

from ._provider import main

raise SystemExit(main())
