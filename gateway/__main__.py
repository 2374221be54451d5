"""`python -m gateway` is `licgate`."""

from gateway.cli import main

raise SystemExit(main())
