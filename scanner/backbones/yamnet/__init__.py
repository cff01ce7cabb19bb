"""YAMNet: framing clips into patches (``frames``), the TFLite and TensorFlow runners
(``runtime``, ``split``) and the backbone that registers itself (``backbone``)."""

from scanner.backbones.yamnet.backbone import YAMNetBackbone

__all__ = ["YAMNetBackbone"]
