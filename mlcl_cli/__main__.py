import sys

from mlcl_cli.cli import main

sys.exit(main())
