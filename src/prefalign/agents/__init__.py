"""Agents: tools (a code sandbox among them), task sets, agents, and their evaluation."""
