"""``python -m npvae``: the ``npvae`` command line (see npvae.cli)."""

from .cli import main

raise SystemExit(main())
