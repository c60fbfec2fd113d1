"""`python -m automl` is the `automl` console script."""
from automl.cli import main

raise SystemExit(main())
