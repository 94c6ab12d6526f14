"""Optional extras: import a heavy package where a feature first needs it, so that the core
(detect, align, embed, verify, evaluate) runs on the base install and a missing extra is
one readable line naming the pip command instead of an ImportError traceback."""
from __future__ import annotations

import sys
from types import ModuleType

from faceforge.core.errors import MissingDependencyError


def require(module: str, extra: str, feature: str) -> ModuleType:
    """`module`, imported; MissingDependencyError naming `faceforge[extra]` when it, or a package
    it imports (timm's torchvision, torch.utils.tensorboard's tensorboard), is missing."""
    try:
        __import__(module)  # the import statement's own hook, so that what patches `import` applies here
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(feature, (exc.name or module).partition(".")[0], extra) from exc
    except ImportError as exc:  # installed but broken or too old: keep the loader's reason
        raise MissingDependencyError(feature, module.partition(".")[0], extra, str(exc)) from exc
    return sys.modules[module]
