"""`python -m automl` is the `automl` console script."""
from automl.cli.main import main

raise SystemExit(main())
