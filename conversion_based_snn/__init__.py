"""The conversion-based SNN baseline (Tan et al., AAAI 2021, as used by Liu et al. 2023): see convert.py."""
