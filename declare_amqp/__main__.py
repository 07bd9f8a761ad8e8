"""``python -m declare_amqp`` is the ``declare-amqp`` command."""

import sys

from ._cli import main

sys.exit(main())
