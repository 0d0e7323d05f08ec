"""Wrappers shared by all simulators: action repeat, time limit, tensor conversion."""

from tdmpc2.envs.wrappers.action_repeat import ActionRepeat
from tdmpc2.envs.wrappers.base import NumpyEnv, Step, Wrapper
from tdmpc2.envs.wrappers.tensor import TensorWrapper
from tdmpc2.envs.wrappers.timelimit import TimeLimit

__all__ = ["ActionRepeat", "NumpyEnv", "Step", "TensorWrapper", "TimeLimit", "Wrapper"]
