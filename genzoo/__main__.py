"""`python -m genzoo ...` (the same as the `genzoo` command; used under torchrun)."""
from .cli import main

main()
