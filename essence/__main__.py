from essence.cli import main

raise SystemExit(main())
