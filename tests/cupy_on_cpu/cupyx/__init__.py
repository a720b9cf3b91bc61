"""``import cupyx`` (for ``cupyx.scipy.special.erf``) gives the stand-in's, beside ../cupy.py."""
import sys

import cupy  # the stand-in, from the folder above

sys.modules.update({"cupyx": cupy.cupyx, "cupyx.scipy": cupy.cupyx.scipy,
                    "cupyx.scipy.special": cupy.cupyx.scipy.special})
