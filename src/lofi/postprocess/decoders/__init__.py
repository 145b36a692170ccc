"""One decoder per head: raw outputs -> :class:`~lofi.postprocess.candidates.Candidates` per window."""

from lofi.postprocess.decoders.actionformer import decode_actionformer
from lofi.postprocess.decoders.bmn import decode_bmn
from lofi.postprocess.decoders.gtad import decode_gtad

__all__ = ["decode_actionformer", "decode_bmn", "decode_gtad"]
