"""`python -m bot` is `topicdesk`."""

import sys

from bot.cli import main

sys.exit(main())
