"""Imports every command module so that their commands register on the app."""
from . import core  # noqa: F401
from . import autoencoders, latent, evaluate, explore, gans  # noqa: F401
from . import classifier  # noqa: F401
from . import translate  # noqa: F401
from . import lecture  # noqa: F401,E402
