"""Constructs shared by the stacks."""

from stacks.constructs.lambda_function import ARCHITECTURE, RUNTIME, TdevFunction, TdevLayers

__all__ = ["ARCHITECTURE", "RUNTIME", "TdevFunction", "TdevLayers"]
