"""``python -m reactive_entities``: the same as the ``reactive-entities`` command."""

from reactive_entities.cli import main

raise SystemExit(main())
