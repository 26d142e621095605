from spkit.cli import main

raise SystemExit(main())
