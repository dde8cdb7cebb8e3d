from pgha_operator.cli import main

raise SystemExit(main())
