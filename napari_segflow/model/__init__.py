"""SegFlow network modules (nn.Modules only: no file IO, no GUI, no training loops)."""
