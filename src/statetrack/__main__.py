from statetrack.cli import main

raise SystemExit(main())
