from grade.cli import main

raise SystemExit(main())
