import sys

from calicoctl.cli import main

sys.exit(main())
