from mirflow.cli import main

raise SystemExit(main())
